// Expressions evaluate as jinja2 evaluates them under Hugging Face's chat-template environment:
// Python's operators, str() and repr(), undefined values, attribute and item access, slices,
// filters, tests and string/dict methods. Every expected string here is what jinja2 3.1 renders.
#include <gtest/gtest.h>

#include "chat/render_util.h"

namespace dsv3 {
namespace {

using Json = nlohmann::ordered_json;

TEST(JinjaExpressions, StringLiteralsTakePythonEscapes) {
  EXPECT_EQ(render(R"({{ 'a\nb' }}|{{ "it's" }}|{{ 'x' 'y' }}|{{ '\x41\u00e9\U0001F600\t\101' }}|{{ '\d' }})"),
            "a\nb|it's|xy|Aé😀\tA|\\d");
}

TEST(JinjaExpressions, NumbersPrintAsPythonPrintsThem) {
  EXPECT_EQ(render("{{ 1_000 }} {{ 1.5e3 }} {{ 2e-5 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e15 }} {{ -0.0 }} {{ 1/3 }}"),
            "1000 1500.0 2e-05 0.30000000000000004 1e+16 1000000000000000.0 -0.0 0.3333333333333333");
  EXPECT_EQ(render("{{ x }} {{ y }} {{ z }}", {{"x", 3.0}, {"y", 1e-7}, {"z", {1.0, 2.5e30}}}),
            "3.0 1e-07 [1.0, 2.5e+30]");
}

TEST(JinjaExpressions, ContainersPrintAsPythonRepr) {
  EXPECT_EQ(render(R"({{ [1, 'a', none, true, 2.5, {'k': [1]}] }} {{ ['it\'s', 'say "hi"'] }} {{ True }} {{ None }})"),
            R"([1, 'a', None, True, 2.5, {'k': [1]}] ["it's", 'say "hi"'] True None)");
}

TEST(JinjaExpressions, IntegerArithmeticFollowsPython) {
  EXPECT_EQ(render("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ -7 % 3 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} "
                   "{{ 2 ** 10 }} {{ 2 ** -1 }} {{ 10 / 4 }} {{ 10 / 5 }}"),
            "3 -4 -2 2 3.0 0.5 1024 0.5 2.5 2.0");
}

TEST(JinjaExpressions, PrecedenceAndAssociativityFollowJinja) {
  EXPECT_EQ(render("{{ 1 + 2 * 3 - 4 / 2 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ true + 1 }} {{ -x }}", {{"x", 3}}),
            "5.0 64 4 2 -3");
}

TEST(JinjaExpressions, StringsAndListsAddAndRepeat) {
  EXPECT_EQ(render("{{ 'ab' * 3 }} {{ [1] * 2 }} {{ 'a' + 'b' }} {{ [1] + [2] }} {{ 'a' ~ 1 ~ none ~ u }}"),
            "ababab [1, 1] ab [1, 2] a1None");
}

TEST(JinjaExpressions, ComparisonsChainAndMixNumberTypes) {
  EXPECT_EQ(render("{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 < 2 < 3 }} "
                   "{{ 3 > 2 > 2 }} {{ u == u }} {{ u == none }}"),
            "True True True True True False True False");
}

TEST(JinjaExpressions, MembershipCoversStringsListsDictsAndUndefined) {
  EXPECT_EQ(render("{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} "
                   "{{ 1 in u }} {{ 1.0 in [1] }}"),
            "True True True True False True");
}

TEST(JinjaExpressions, AndOrReturnAnOperandAsPythonDoes) {
  EXPECT_EQ(render("{{ 0 or 'x' }} {{ 'a' and 'b' }} {{ '' and 'b' }} {{ u or 'd' }} {{ not 0 }}"), "x b  d True");
}

TEST(JinjaExpressions, ConditionalExpressionWithoutElseIsUndefined) {
  EXPECT_EQ(render("{{ 'y' if x else 'n' }}|{{ 'y' if x }}|{{ 'a' if x else 'b' if y else 'c' }}",
                   {{"x", false}, {"y", false}}),
            "n||c");
}

TEST(JinjaExpressions, AttributesAndItemsReachIntoMessages) {
  const Json m = {{"role", "user"}, {"content", "Hi"}, {"list", {1, 2, 3}}, {"nested", {{"k", "v"}}}};
  EXPECT_EQ(render("{{ m.role }} {{ m['content'] }} {{ m.list[0] }} {{ m.list[-1] }} {{ m.list.1 }} "
                   "{{ m.nested.k }} [{{ m.missing }}] [{{ m.list[9] }}]",
                   {{"m", m}}),
            "user Hi 1 3 2 v [] []");
}

TEST(JinjaExpressions, IndexAndSliceByCodePoint) {
  EXPECT_EQ(render("{{ 'abc'[0] }} {{ 'abc'[-1] }} {{ 'héllo'[1] }} {{ [0, 1, 2, 3, 4][1:3] }} "
                   "{{ [0, 1, 2, 3, 4][::-2] }} {{ [0, 1, 2, 3, 4][-2:] }} {{ 'héllo wörld'[2:8] }} "
                   "{{ 'abcdef'[5:1:-2] }}"),
            "a c é [1, 2] [4, 2, 0] [3, 4] llo wö fd");
}

TEST(JinjaExpressions, TojsonIsJsonDumpsWithoutAsciiEscaping) {
  const Json x = {{"b", 1}, {"a", {1.5, "é", nullptr, true, "q\"\\\n\t\x01", 1e20}}};
  EXPECT_EQ(render("{{ x | tojson }}", {{"x", x}}),
            R"({"b": 1, "a": [1.5, "é", null, true, "q\"\\\n\t\u0001", 1e+20]})");
}

TEST(JinjaExpressions, TojsonTakesIndentSeparatorsSortKeysAndEnsureAscii) {
  const Json x = {{"b", 1}, {"a", {1, Json::object()}}, {"e", Json::array()}};
  EXPECT_EQ(render("{{ x | tojson(indent=2) }}|{{ x | tojson(sort_keys=true, separators=(',', ':')) }}|"
                   "{{ 'é😀' | tojson(ensure_ascii=true) }}",
                   {{"x", x}}),
            "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    {}\n  ],\n  \"e\": []\n}|"
            R"({"a":[1,{}],"b":1,"e":[]}|"\u00e9\ud83d\ude00")");
}

TEST(JinjaExpressions, StringFilters) {
  EXPECT_EQ(render("{{ '  a b  ' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ 'HeLLo' | lower }}|{{ 'héllo' | upper }}|"
                   "{{ 'hELLO wORLD' | capitalize }}|{{ 'aXbXc' | replace('X', '-') }}|{{ 'aaa' | replace('a', 'b', 2) }}"),
            "a b|a|hello|HÉLLO|Hello world|a-b-c|bba");
}

TEST(JinjaExpressions, SequenceFilters) {
  EXPECT_EQ(render("{{ [3, 1, 2] | length }} {{ 'héllo' | length }} {{ u | length }} {{ [1, 2] | count }} "
                   "{{ [1, 2, 3] | first }} {{ [1, 2, 3] | last }} {{ 'abc' | first }} [{{ [] | first }}]"),
            "3 5 0 2 1 3 a []");
  EXPECT_EQ(render("{{ [1, 2, 3] | join(', ') }} {{ ['a', 'b'] | join }} {{ [1, none, 'x'] | join('|') }} "
                   "{{ 'abc' | list }} {{ [1, 2, 3] | reverse | list }} {{ 'abc' | reverse }}"),
            "1, 2, 3 ab 1|None|x ['a', 'b', 'c'] [3, 2, 1] cba");
  EXPECT_EQ(render("{% for k, v in {'b': 1, 'a': 2} | items %}{{ k }}={{ v }};{% endfor %}"), "b=1;a=2;");
}

TEST(JinjaExpressions, ConversionAndDefaultFilters) {
  EXPECT_EQ(render("{{ u | default('d') }} {{ none | default('d') }} {{ '' | default('d', true) }} {{ 'x' | d('d') }} "
                   "{{ 42 | string }} {{ '42' | int + 1 }} {{ '4.7' | int }} {{ 'x' | int(7) }} {{ '3.5' | float }} "
                   "{{ -3 | abs }}"),
            "d None d x 42 43 4 7 3.5 3");
}

TEST(JinjaExpressions, StringSplitMethodsFollowPython) {
  EXPECT_EQ(render("{{ 'a,b,,c'.split(',') }} {{ '  a  b c '.split() }} {{ ' a b c '.split(none, 1) }} "
                   "{{ 'a,b,c'.rsplit(',', 1) }} {{ 'x</think>y</think>z'.split('</think>')[-1] }}"),
            "['a', 'b', '', 'c'] ['a', 'b', 'c'] ['a', 'b c '] ['a,b', 'c'] z");
}

TEST(JinjaExpressions, StripRemovesUnicodeWhitespaceOrTheGivenCharacters) {
  EXPECT_EQ(render(R"([{{ '  x  '.strip() }}|{{ '  x  '.lstrip() }}|{{ '  x  '.rstrip() }}|{{ '\n\nhi\n'.strip('\n') }}|)"
                   "{{ '\u3000a\u00a0'.strip() }}]"),
            "[x|x  |  x|hi|a]");
}

TEST(JinjaExpressions, OtherStringMethods) {
  EXPECT_EQ(render("{{ 'hello'.startswith('he') }} {{ 'hello'.endswith(('x', 'lo')) }} {{ 'Hi'.lower() }} "
                   "{{ 'Hi'.upper() }} {{ 'ab'.replace('a', 'c') }} {{ 'héllo'.find('l') }} {{ '-'.join(['a', 'b']) }}"),
            "True True hi HI cb 2 a-b");
}

TEST(JinjaExpressions, CaseMappingIsUnicode) {
  EXPECT_EQ(render("{{ 'ΟΔΟΣ ΣΑΣ'.lower() }} {{ 'ǆemal' | capitalize }} {{ 'Ёлка' | upper }}"), "οδος σας ǅemal ЁЛКА");
}

TEST(JinjaExpressions, DictMethodsKeepInsertionOrder) {
  EXPECT_EQ(render("{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 5) }} {{ d.keys() | list }} {{ d.values() | list }} "
                   "{% for k, v in d.items() %}{{ k }}{{ v }}{% endfor %}",
                   {{"d", {{"b", 2}, {"a", 1}}}}),
            "1 None 5 ['b', 'a'] [2, 1] b2a1");
}

TEST(JinjaExpressions, TypeTests) {
  EXPECT_EQ(render("{{ 1 is number }} {{ true is number }} {{ true is integer }} {{ 1.0 is float }} {{ 'a' is string }} "
                   "{{ none is none }} {{ 0 is false }} {{ false is false }} {{ u is defined }} {{ u is undefined }} "
                   "{{ [] is mapping }} {{ {} is mapping }} {{ 'x' is iterable }}"),
            "True True False True True True False True False True False True True");
}

TEST(JinjaExpressions, ValueTestsTakeArgumentsWithOrWithoutParentheses) {
  EXPECT_EQ(render("{{ 4 is even }} {{ 3 is odd }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ 1 is eq 1 }} "
                   "{{ 2 is gt 1 }} {{ 2 is in [1, 2] }} {{ 'ab' is lower }} {{ 'x' is not none }}"),
            "True True True False True True True True True");
}

}  // namespace
}  // namespace dsv3
