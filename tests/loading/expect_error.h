// EXPECT_ERROR(statement, "part", ...): the statement throws dsv3::Error whose message contains every part.
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>

#include "dsv3/util/error.h"

namespace dsv3::testing {

inline ::testing::AssertionResult message_contains(const std::string& message, std::initializer_list<std::string> parts) {
  for (const std::string& part : parts)
    if (message.find(part) == std::string::npos)
      return ::testing::AssertionFailure() << "message \"" << message << "\" lacks \"" << part << "\"";
  return ::testing::AssertionSuccess();
}

}  // namespace dsv3::testing

#define EXPECT_ERROR(statement, ...)                                                    \
  do {                                                                                  \
    try {                                                                               \
      statement;                                                                        \
      ADD_FAILURE() << #statement " threw no dsv3::Error";                              \
    } catch (const ::dsv3::Error& e) {                                                  \
      EXPECT_TRUE(::dsv3::testing::message_contains(e.what(), {__VA_ARGS__}));          \
    }                                                                                   \
  } while (0)
