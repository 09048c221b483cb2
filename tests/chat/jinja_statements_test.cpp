// Statements behave as in jinja2: for loops with `loop`, else, filters, break/continue and
// unpacking; if/elif/else; set with jinja2's scoping (a loop body's assignments stay in the loop,
// a namespace carries state out of it; if opens no scope); block set. Expected strings are what
// jinja2 3.1 renders.
#include <gtest/gtest.h>

#include "chat/render_util.h"

namespace dsv3 {
namespace {

using Json = nlohmann::ordered_json;

TEST(JinjaStatements, LoopVariableCountsFromBothEnds) {
  EXPECT_EQ(render("{% for x in xs %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/"
                   "{{ loop.first }}/{{ loop.last }}/{{ loop.length }};{% endfor %}",
                   {{"xs", {"a", "b", "c"}}}),
            "1/0/3/2/True/False/3;2/1/2/1/False/False/3;3/2/1/0/False/True/3;");
}

TEST(JinjaStatements, LoopVariableSeesNeighboursAndCycles) {
  const Json vars = {{"xs", {"a", "b", "c"}}};
  EXPECT_EQ(render("{% for x in xs %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }}|{% endfor %}", vars),
            "<a>b|a<b>c|b<c>|");
  EXPECT_EQ(render("{% for x in xs %}{{ loop.cycle('odd', 'even') }} {% endfor %}", vars), "odd even odd ");
}

TEST(JinjaStatements, ElseRendersWhenNothingIsIterated) {
  EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
}

TEST(JinjaStatements, LoopFilterSkipsItemsBeforeCounting) {
  EXPECT_EQ(render("{% for x in xs if x > 1 %}{{ x }}:{{ loop.length }},{% else %}none{% endfor %}",
                   {{"xs", {1, 2, 3}}}),
            "2:2,3:2,");
}

TEST(JinjaStatements, BreakAndContinue) {
  EXPECT_EQ(render("{% for x in xs %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}"
                   "{{ x }}{% endfor %}",
                   {{"xs", {1, 2, 3, 4, 5}}}),
            "13");
}

TEST(JinjaStatements, LoopTargetsUnpack) {
  EXPECT_EQ(render("{% for a, b in [[1, 2], [3, 4]] %}{{ a }}{{ b }};{% endfor %}"
                   "{% for (a, b) in [[5, 6]] %}{{ a + b }}{% endfor %}"),
            "12;34;11");
}

TEST(JinjaStatements, LoopsVisitCodePointsKeysAndNothingForUndefined) {
  EXPECT_EQ(render("{% for c in 'hé' %}[{{ c }}]{% endfor %}{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}"
                   "{% for i in u %}never{% endfor %}"),
            "[h][é]xy");
}

TEST(JinjaStatements, RangeCountsLikePython) {
  EXPECT_EQ(render("{% for i in range(3) %}{{ i }}{% endfor %} {% for i in range(1, 10, 3) %}{{ i }}{% endfor %} "
                   "{{ range(5, 0, -2) | list }}"),
            "012 147 [5, 3, 1]");
}

TEST(JinjaStatements, InnerLoopShadowsTheOuterLoopVariable) {
  EXPECT_EQ(render("{% for x in [1, 2] %}{% for y in [3, 4] %}{{ loop.index }}{{ x }}{{ y }} {% endfor %}"
                   "{{ loop.index }}|{% endfor %}"),
            "113 214 1|123 224 2|");
}

TEST(JinjaStatements, IfElifElse) {
  EXPECT_EQ(render("{% for v in [1, 2, 3] %}{% if v == 1 %}one{% elif v == 2 %}two{% else %}other{% endif %},"
                   "{% endfor %}"),
            "one,two,other,");
}

TEST(JinjaStatements, AssignmentsInALoopBodyStayInTheLoop) {
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}"), "231");
  EXPECT_EQ(render("{% for i in [1, 2] %}{% if i == 1 %}{% set y = 'set' %}{% endif %}[{{ y }}]{% endfor %}[{{ y }}]"),
            "[set][][]");
}

TEST(JinjaStatements, IfOpensNoScope) { EXPECT_EQ(render("{% if true %}{% set z = 5 %}{% endif %}{{ z }}"), "5"); }

TEST(JinjaStatements, NamespaceCarriesStateOutOfLoops) {
  EXPECT_EQ(render("{% set ns = namespace(a=1, b='x') %}{% for i in [1, 2, 3] %}{% set ns.a = ns.a * 2 %}{% endfor %}"
                   "{{ ns.a }} {{ ns.b }} [{{ ns.c }}]"),
            "8 x []");
  EXPECT_EQ(render("{% set ns = namespace(d={'k': 1}) %}{{ ns.d.k }} {{ namespace(a=1).a }}"), "1 1");
}

TEST(JinjaStatements, SetUnpacksAndCapturesBlocks) {
  EXPECT_EQ(render("{% set a, b = [1, 2] %}{{ a }}{{ b }}{% set s %}inner {{ 1 + 1 }}{% endset %}[{{ s }}]"),
            "12[inner 2]");
}

TEST(JinjaStatements, ATemplateLevelSetShadowsTheContext) {
  const std::string source =
      "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
      "{{ add_generation_prompt }}";
  EXPECT_EQ(render(source), "False");
  EXPECT_EQ(render(source, {{"add_generation_prompt", true}}), "True");
}

TEST(JinjaStatements, GenerationBlocksRenderTheirBody) {
  EXPECT_EQ(render("a{% generation %}b{{ 1 }}{% endgeneration %}c"), "ab1c");
}

}  // namespace
}  // namespace dsv3
