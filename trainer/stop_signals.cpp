#include "trainer/stop_signals.h"

#include <csignal>

namespace convnet {
namespace {

volatile std::sig_atomic_t g_signal = 0;
// SIGHUP (the terminal or ssh session went away) too, unless the parent
// ignores it (nohup): then it stays ignored.
constexpr int kSignals[] = {SIGTERM, SIGUSR1, SIGINT, SIGHUP};
constexpr int kCount = 4;
struct sigaction g_previous[kCount];
int g_installed = 0;  // live StopSignals; the outermost installs and restores

void record(int signal) { g_signal = signal; }

}  // namespace

StopSignals::StopSignals() {
  if (g_installed++ > 0) return;  // nested: keeps what the outer one recorded
  g_signal = 0;
  struct sigaction action = {};
  action.sa_handler = record;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int i = 0; i < kCount; ++i) {
    sigaction(kSignals[i], nullptr, &g_previous[i]);
    if (kSignals[i] == SIGHUP && g_previous[i].sa_handler == SIG_IGN) continue;
    sigaction(kSignals[i], &action, nullptr);
  }
  // A parent may have blocked them: a signal pending since then is delivered
  // (and recorded) now.
  sigset_t ours;
  sigemptyset(&ours);
  for (int s : kSignals) sigaddset(&ours, s);
  sigprocmask(SIG_UNBLOCK, &ours, nullptr);
}

StopSignals::~StopSignals() {
  if (--g_installed > 0) return;
  for (int i = 0; i < kCount; ++i) sigaction(kSignals[i], &g_previous[i], nullptr);
}

bool StopSignals::requested() const { return g_signal != 0; }
int StopSignals::signal_number() const { return g_signal; }

}  // namespace convnet
