#include "comm/agreement.h"

#include <sstream>

#include "core/error.h"

namespace convnet {
namespace {

// One "field\tvalue" line per fact (values hold no newlines; see below).
std::string serialize(const RankFacts& facts) {
  std::string text;
  for (const auto& [field, value] : facts) {
    std::string flat = value;
    for (char& c : flat)
      if (c == '\n') c = ' ';
    text += field + '\t' + flat + '\n';
  }
  return text;
}

RankFacts parse(const std::string& text) {
  RankFacts facts;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const std::size_t tab = line.find('\t');
    facts.emplace_back(line.substr(0, tab), tab == std::string::npos ? "" : line.substr(tab + 1));
  }
  return facts;
}

// "field: 'a' on rank 0, 'b' on rank r" for every field that differs.
std::string differences(const RankFacts& root, const RankFacts& other, int rank) {
  std::string text;
  for (std::size_t i = 0; i < std::max(root.size(), other.size()); ++i) {
    const auto& a = i < root.size() ? root[i] : std::pair<std::string, std::string>{};
    const auto& b = i < other.size() ? other[i] : std::pair<std::string, std::string>{};
    if (a == b) continue;
    text += (text.empty() ? "" : "; ") + (a.first.empty() ? b.first : a.first) + ": '" + a.second +
            "' on rank 0, '" + b.second + "' on rank " + std::to_string(rank);
  }
  return text;
}

}  // namespace

uint64_t fingerprint(const void* data, std::size_t bytes, uint64_t seed) {
  uint64_t hash = seed;
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < bytes; ++i) hash = (hash ^ p[i]) * 1099511628211ull;
  return hash;
}

void check_ranks_agree(Communicator& communicator, const RankFacts& facts) {
  if (communicator.size() == 1) return;
  const std::string mine = serialize(facts);
  std::string root = mine;
  communicator.broadcast(root, 0);
  std::vector<int64_t> disagrees(communicator.size(), 0);
  disagrees[communicator.rank()] = mine == root ? 0 : 1;
  communicator.allreduce(disagrees.data(), disagrees.size());
  std::string ranks;
  int first = -1;
  for (int r = 0; r < communicator.size(); ++r) {
    if (disagrees[r] == 0) continue;
    if (first < 0) first = r;
    ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
  }
  if (first < 0) return;
  std::string theirs = mine;
  communicator.broadcast(theirs, first);
  CONVNET_CHECK(false, "the ranks of this job disagree about what must be the same on every rank: ",
                "rank(s) ", ranks, " differ from rank 0 (",
                differences(parse(root), parse(theirs), first), ")");
}

}  // namespace convnet
