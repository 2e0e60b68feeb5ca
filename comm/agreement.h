// Facts every rank of a job must share (the model, the options that shape
// the computation, the identity of the training data), and the check that
// they do: one broadcast and one small allreduce at start, before any rank
// reads data or waits in a collective that mismatched ranks would hang or
// garble (a rank with other images, classes or options).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "comm/communicator.h"

namespace convnet {

// (field, value) pairs in a fixed order, the same fields on every rank.
using RankFacts = std::vector<std::pair<std::string, std::string>>;

// Returns when every rank's facts equal rank 0's; otherwise throws on every
// rank an Error naming the disagreeing ranks and, for the first of them, each
// field that differs with both values.
void check_ranks_agree(Communicator& communicator, const RankFacts& facts);

// FNV-1a, 64 bits: a content fingerprint for facts (not cryptographic).
uint64_t fingerprint(const void* data, std::size_t bytes, uint64_t seed = 14695981039346656037ull);

}  // namespace convnet
