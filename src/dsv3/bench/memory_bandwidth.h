// The machine's memory read bandwidth, measured: all threads of the pool sum disjoint parts of a
// buffer far larger than the caches; the best of several passes counts.
#pragma once

namespace dsv3 {

double measure_read_bandwidth_bytes_per_s();

}  // namespace dsv3
