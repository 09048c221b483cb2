// Whitespace in templates as Hugging Face's jinja2 environment leaves it: trim_blocks, lstrip_blocks,
// the - and + markers, comments, newline normalisation and the dropped trailing newline.
#include <gtest/gtest.h>

#include "chat/render_util.h"

namespace dsv3 {
namespace {

TEST(JinjaWhitespace, TrimBlocksDropsTheNewlineAfterABlockTag) {
  EXPECT_EQ(render("a\n{% if true %}\nb\n{% endif %}\nc"), "a\nb\nc");
}

TEST(JinjaWhitespace, LstripBlocksDropsIndentBeforeABlockTagOnItsOwnLine) {
  EXPECT_EQ(render("a\n    {% if true %}\n    b\n    {% endif %}\nc"), "a\n    b\nc");
  EXPECT_EQ(render("{% if true %}\n   {% if true %}x{% endif %}{% endif %}"), "x");
}

TEST(JinjaWhitespace, LstripBlocksKeepsSpacesThatFollowTextOnTheLine) {
  EXPECT_EQ(render("a  {% if true %}b{% endif %}  c"), "a  b  c");
  EXPECT_EQ(render("{{ a }}   {% if true %}x{% endif %}", {{"a", 1}}), "1   x");
}

TEST(JinjaWhitespace, MinusStripsAllWhitespaceOnItsSide) {
  EXPECT_EQ(render("a\n\t {%- if true -%}\n  b  \n{%- endif %}\n\nc"), "ab\nc");
  EXPECT_EQ(render("x {{- ' y ' -}} z"), "x y z");
}

TEST(JinjaWhitespace, ExpressionTagsKeepTheirNewline) { EXPECT_EQ(render("{{ 'x' }}\n{{ 'y' }}"), "x\ny"); }

TEST(JinjaWhitespace, CommentsRenderNothingAndTrimLikeBlocks) {
  EXPECT_EQ(render("a\n  {# note #}\nb"), "a\nb");
  EXPECT_EQ(render("a  {#- note -#}   b"), "ab");
}

TEST(JinjaWhitespace, PlusTurnsTheBlockOptionsOff) {
  EXPECT_EQ(render("  {%+ if true %}x{% endif %}"), "  x");
  EXPECT_EQ(render("{% if true +%}\nx{% endif %}"), "\nx");
}

TEST(JinjaWhitespace, OneTrailingNewlineOfTheTemplateIsDropped) {
  EXPECT_EQ(render("x\n"), "x");
  EXPECT_EQ(render("x\n\n"), "x\n");
}

TEST(JinjaWhitespace, NewlinesAreNormalised) { EXPECT_EQ(render("a\r\nb\rc"), "a\nb\nc"); }

}  // namespace
}  // namespace dsv3
