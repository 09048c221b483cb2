// What the interpreter refuses says what and where: constructs outside the supported subset are
// named when the template is parsed, syntax errors carry their line, raise_exception() carries its
// message, and run-time type errors read like Python's.
#include <gtest/gtest.h>

#include "chat/render_util.h"

namespace dsv3 {
namespace {

using Json = nlohmann::ordered_json;

TEST(JinjaErrors, UnsupportedTagsFiltersTestsAndFunctionsAreNamed) {
  EXPECT_EQ(error_of("{% macro f() %}{% endmacro %}"), "chat template line 1: the {% macro %} tag is not supported");
  EXPECT_EQ(error_of("{% include 'x.jinja' %}"), "chat template line 1: the {% include %} tag is not supported");
  EXPECT_EQ(error_of("{% for x in xs recursive %}{% endfor %}"),
            "chat template line 1: recursive for loops are not supported");
  EXPECT_EQ(error_of("{{ x | wordwrap }}"), "chat template line 1: the filter 'wordwrap' is not supported");
  EXPECT_EQ(error_of("{{ x is sameas none }}"), "chat template line 1: the test 'sameas' is not supported");
  EXPECT_EQ(error_of("{{ 'abc'.zfill(5) }}"), "chat template line 1: 'abc'.zfill is not a supported function or method");
  EXPECT_EQ(error_of("{{ x.append(1) }}", {{"x", {1}}}),
            "chat template line 1: x.append is not a supported function or method");
  EXPECT_EQ(error_of("{{ 'a %s' % 1 }}"), "chat template line 1: string formatting with % is not supported");
}

TEST(JinjaErrors, UnsupportedConstructsFailWhenParsedNotWhenReached) {
  EXPECT_THROW(ChatTemplate("{% if false %}{{ x | wordwrap }}{% endif %}"), Error);
}

TEST(JinjaErrors, SyntaxErrorsNameTheirLine) {
  EXPECT_EQ(error_of("a\n{% if x %}\nopen"), "chat template line 3: missing {% endif %} before the end of the template");
  EXPECT_EQ(error_of("line 1\n{{ 1 + }}"), "chat template line 2: unexpected '}}'");
  EXPECT_EQ(error_of("{{ (1 }}"), "chat template line 1: unexpected '}', expected ')'");
  EXPECT_EQ(error_of("{% endfor %}"), "chat template line 1: unexpected tag 'endfor'");
  EXPECT_EQ(error_of("{% break %}"), "chat template line 1: 'break' outside a for loop");
  EXPECT_EQ(error_of("{{ 'open }}"), "chat template line 1: unterminated string literal");
  EXPECT_EQ(error_of("{# open"), "chat template line 1: missing end of comment tag #}");
  EXPECT_EQ(error_of("{{ 1 $ 2 }}"), "chat template line 1: unexpected character '$'");
}

TEST(JinjaErrors, RaiseExceptionCarriesTheTemplatesMessage) {
  EXPECT_EQ(error_of("{{ raise_exception('roles must alternate') }}"),
            "chat template line 1: raise_exception: roles must alternate");
  EXPECT_EQ(render("{% if false %}{{ raise_exception('never') }}{% endif %}fine"), "fine");
}

TEST(JinjaErrors, UsingAnUndefinedValueNamesIt) {
  const Json message = {{"message", Json::object()}};
  EXPECT_EQ(error_of("{{ 'a' + message['content'] }}", message), "chat template line 1: message['content'] is undefined");
  EXPECT_EQ(error_of("{{ message.content.x }}", message), "chat template line 1: message.content is undefined");
  EXPECT_EQ(error_of("{{ u | tojson }}"), "chat template line 1: tojson: u is undefined");
}

TEST(JinjaErrors, TypeErrorsReadLikePython) {
  EXPECT_EQ(error_of("x\n{{ 'a' + 1 }}"), "chat template line 2: unsupported operand types for +: 'str' and 'int'");
  EXPECT_EQ(error_of("{{ 1 / 0 }}"), "chat template line 1: division by zero");
  EXPECT_EQ(error_of("{{ 1 < 'a' }}"), "chat template line 1: '<' not supported between instances of 'int' and 'str'");
  EXPECT_EQ(error_of("{% for x in 5 %}{% endfor %}"), "chat template line 1: 'int' object is not iterable");
  EXPECT_EQ(error_of("{% set x = 1 %}{% set x.y = 2 %}"),
            "chat template line 1: cannot assign attribute 'y' of x, which is not a namespace but int");
  EXPECT_EQ(error_of("{{ 9223372036854775807 + 1 }}"), "chat template line 1: integer overflow");
}

TEST(JinjaErrors, ArgumentsBindByPositionAndName) {
  EXPECT_EQ(error_of("{{ 'x' | replace('a') }}"), "chat template line 1: replace() missing required argument 'new'");
  EXPECT_EQ(error_of("{{ 'x'.split(',', 1, 2) }}"), "chat template line 1: split() takes at most 2 arguments (3 given)");
  EXPECT_EQ(error_of("{{ 'x' | trim(nope=1) }}"), "chat template line 1: trim() got an unexpected keyword argument 'nope'");
  EXPECT_EQ(error_of("{{ range(1000000) | length }}"), "chat template line 1: range() is too big: at most 100000 items");
}

}  // namespace
}  // namespace dsv3
