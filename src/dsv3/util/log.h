// Logging to stderr, with a level set once from DSV3_LOG (error, warn, info, debug; default info).
#pragma once

#include "dsv3/util/error.h"

namespace dsv3 {

enum class LogLevel { Error = 0, Warn = 1, Info = 2, Debug = 3 };

LogLevel log_level();
void log_line(LogLevel level, const std::string& message);

template <typename... Args>
void log_info(const Args&... args) {
  if (log_level() >= LogLevel::Info) log_line(LogLevel::Info, str_cat(args...));
}
template <typename... Args>
void log_warn(const Args&... args) {
  if (log_level() >= LogLevel::Warn) log_line(LogLevel::Warn, str_cat(args...));
}
template <typename... Args>
void log_debug(const Args&... args) {
  if (log_level() >= LogLevel::Debug) log_line(LogLevel::Debug, str_cat(args...));
}

}  // namespace dsv3
