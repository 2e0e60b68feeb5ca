// SplitMix64 (Steele, Lea and Flood 2014): a small, well-mixed, portable
// generator; the same numbers on every platform and compiler. The sample
// order and the per-sample augmentation draws both come from it.
#pragma once

#include <cstdint>

namespace convnet {

// The output function: a bijective mix of 64 bits.
inline uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Advances `state` and returns the next number.
inline uint64_t splitmix64(uint64_t& state) {
  return splitmix64_mix(state += 0x9e3779b97f4a7c15ULL);
}

}  // namespace convnet
