#include "dsv3/util/log.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace dsv3 {

LogLevel log_level() {
  static const LogLevel level = [] {
    const char* env = std::getenv("DSV3_LOG");
    if (!env) return LogLevel::Info;
    if (!std::strcmp(env, "error")) return LogLevel::Error;
    if (!std::strcmp(env, "warn")) return LogLevel::Warn;
    if (!std::strcmp(env, "debug")) return LogLevel::Debug;
    return LogLevel::Info;
  }();
  return level;
}

void log_line(LogLevel level, const std::string& message) {
  static std::mutex mutex;
  static const char* names[] = {"error", "warn", "info", "debug"};
  std::lock_guard lock(mutex);
  std::fprintf(stderr, "dsv3 %s: %s\n", names[int(level)], message.c_str());
}

}  // namespace dsv3
