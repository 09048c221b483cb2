#include "dsv3/engine/stop_matcher.h"

#include <gtest/gtest.h>

namespace dsv3 {
namespace {

TEST(StopMatcher, StopStringSplitAcrossPiecesIsCaughtAndNotEmitted) {
  StopMatcher m({"</end>"});
  std::string out = m.push("Hello </");
  EXPECT_EQ(out, "Hello ");  // "</" could begin the stop string: held back
  out += m.push("en");
  out += m.push("d> more");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(out, "Hello ");
}

TEST(StopMatcher, HeldTextIsReleasedWhenItCannotStartAStop) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.push("ST"), "");
  EXPECT_EQ(m.push("AR"), "STAR");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"world", "lo"});
  EXPECT_EQ(m.push("hello world"), "hel");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, FlushReturnsHeldTextAtTheEnd) {
  StopMatcher m({"abc"});
  EXPECT_EQ(m.push("xab"), "x");
  EXPECT_EQ(m.flush(), "ab");
}

TEST(StopMatcher, NoStopsPassesEverythingThrough) {
  StopMatcher m({});
  EXPECT_EQ(m.push("anything"), "anything");
}

}  // namespace
}  // namespace dsv3
