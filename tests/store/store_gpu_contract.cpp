// StoreContract, GPU-worker part: picking and claiming one run, waiting reasons, named leases,
// agents and the command queue (see store/store.hpp). Instantiated per backend with the rest.
#include <algorithm>
#include <atomic>
#include <fstream>
#include <set>
#include <thread>
#include <vector>

#include <gmock/gmock.h>

#include "store/store_contract.hpp"
#include "support/child_process.hpp"
#include "support/wait.hpp"

namespace gpuq::store::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;
using ::testing::IsEmpty;

std::vector<std::string> Ids(const std::vector<PendingRun>& runs) {
  std::vector<std::string> ids;
  for (const auto& r : runs) ids.push_back(r.id);
  return ids;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// PendingRuns, ClaimRun, waiting reasons, PendingByType

TEST_P(StoreContract, PendingRunsListsTheBestAndTheOldestOnceInPriorityOrder) {
  auto old_low1 = SubmitOk("tts", 10);
  clock_.Advance(Millis(1));
  auto old_low2 = SubmitOk("tts", 10);
  clock_.Advance(Millis(1));
  auto high1 = SubmitOk("comfy", 90);
  clock_.Advance(Millis(1));
  auto high2 = SubmitOk("comfy", 90);
  clock_.Advance(Millis(1));
  auto high3 = SubmitOk("tts", 90);
  clock_.Advance(Millis(1));
  auto mid = SubmitOk("tts", 50);

  auto two = store_->PendingRuns({"tts", "comfy", "tts"}, 2);
  auto three = store_->PendingRuns({"tts", "comfy"}, 3);

  ASSERT_TRUE(two) << two.error().message;
  EXPECT_THAT(Ids(two.value()), ElementsAre(high1, high2, old_low1, old_low2));
  EXPECT_EQ(two.value()[0].type, "comfy");
  EXPECT_EQ(two.value()[0].priority, 90);
  EXPECT_EQ(two.value()[2].type, "tts");
  EXPECT_EQ(two.value()[2].created_at, GetOk(old_low1).created_at);
  ASSERT_TRUE(three) << three.error().message;
  EXPECT_THAT(Ids(three.value()), ElementsAre(high1, high2, high3, old_low1, old_low2));
  EXPECT_THAT(Ids(store_->PendingRuns({"tts"}, 10).value()),
              ElementsAre(high3, mid, old_low1, old_low2));
}

TEST_P(StoreContract, PendingRunsHasOnlyClaimablePendingRunsOfTheTypes) {
  auto backing_off = SubmitOk("tts");
  auto lease = ClaimOne("tts");
  ASSERT_EQ(store_->Fail(backing_off, lease.token, "boom", true).value(), FailOutcome::kRetrying);
  auto processing = SubmitOk("tts");
  ClaimOne("tts");
  auto cancelled = SubmitOk("tts");
  ASSERT_TRUE(store_->Cancel(cancelled));
  SubmitOk("other");
  auto ready = SubmitOk("tts");

  auto now = store_->PendingRuns({"tts"}, 10);
  clock_.Advance(Millis(60'000));
  auto later = store_->PendingRuns({"tts"}, 10);

  ASSERT_TRUE(now) << now.error().message;
  EXPECT_THAT(Ids(now.value()), ElementsAre(ready));
  ASSERT_TRUE(later) << later.error().message;
  // Same priority and (manual clock) the same created_at: the order between them is by id.
  EXPECT_THAT(Ids(later.value()), UnorderedElementsAre(backing_off, ready));
  EXPECT_THAT(store_->PendingRuns({}, 10).value(), IsEmpty());
}

TEST_P(StoreContract, ClaimRunTakesThatRunWithItsGpuAndALease) {
  auto first = SubmitOk("comfy", 10);
  auto wanted = SubmitOk("comfy", 90);
  auto earlier = ClaimOne("comfy");  // takes `wanted`, the higher priority; release it
  ASSERT_EQ(earlier.run.id, wanted);
  ASSERT_TRUE(store_->Release(wanted, earlier.token));
  clock_.Advance(Millis(5));

  auto claimed = store_->ClaimRun(first, "host-a/gpu0", "host-a:0", Millis(10'000));

  ASSERT_TRUE(claimed) << claimed.error().message;
  ASSERT_TRUE(claimed.value());
  const Lease& lease = *claimed.value();
  EXPECT_GT(lease.token, earlier.token);
  EXPECT_EQ(lease.run.id, first);
  EXPECT_EQ(lease.run.state, RunState::kProcessing);
  EXPECT_EQ(lease.run.worker, "host-a/gpu0");
  EXPECT_EQ(lease.run.gpu, "host-a:0");
  EXPECT_EQ(lease.run.attempts, 1);
  EXPECT_EQ(lease.run.started_at, clock_.Now());
  gpuq::Run stored = GetOk(first);
  EXPECT_EQ(stored.state, RunState::kProcessing);
  EXPECT_EQ(stored.gpu, "host-a:0");
  EXPECT_EQ(ToJson(stored)["gpu"], "host-a:0");
  EXPECT_EQ(GetOk(wanted).state, RunState::kPending);
  ASSERT_TRUE(store_->Heartbeat(first, lease.token, Millis(10'000)));
  ASSERT_TRUE(store_->Complete(first, lease.token, Json{{"ok", true}}, {}));
  EXPECT_EQ(GetOk(first).state, RunState::kCompleted);
}

TEST_P(StoreContract, RunsClaimedByClaimRunFailReleaseAndExpireLikeAnyOther) {
  NewRun one_try;
  one_try.type = "tts";
  one_try.max_attempts = 1;
  auto fails = SubmitOk("tts");
  auto released = SubmitOk("tts");
  auto expires = SubmitOk(one_try);
  auto held = SubmitOk("tts");
  auto claim = [&](const std::string& id, const std::string& worker) {
    auto lease = store_->ClaimRun(id, worker, "host-a:0", Millis(1'000));
    EXPECT_TRUE(lease && lease.value()) << id;
    return lease && lease.value() ? *lease.value() : Lease{};
  };
  Lease fail_lease = claim(fails, "host-a/gpu0");
  Lease release_lease = claim(released, "host-a/gpu0");
  claim(expires, "host-a/gpu1");
  claim(held, "host-b/gpu0");

  EXPECT_EQ(store_->Fail(fails, fail_lease.token, "oom", true).value(), FailOutcome::kRetrying);
  EXPECT_TRUE(store_->Release(released, release_lease.token));
  EXPECT_EQ(store_->RequeueHeldBy("host-b/").value(), 1);
  clock_.Advance(Millis(1'001));
  EXPECT_EQ(store_->RequeueExpired().value(), 1);

  EXPECT_EQ(GetOk(fails).state, RunState::kPending);
  EXPECT_EQ(GetOk(fails).error, "oom");
  EXPECT_EQ(GetOk(released).state, RunState::kPending);
  EXPECT_EQ(GetOk(released).attempts, 0);
  EXPECT_EQ(GetOk(expires).state, RunState::kFailed);
  EXPECT_EQ(GetOk(held).state, RunState::kPending);
  EXPECT_EQ(GetOk(held).attempts, 1);
}

TEST_P(StoreContract, ClaimRunIsExclusiveAcrossThreads) {
  constexpr int kThreads = 4;
  constexpr int kRuns = 50;
  std::vector<std::string> ids;
  for (int i = 0; i < kRuns; ++i) ids.push_back(SubmitOk("comfy"));
  std::atomic<int> errors{0};
  std::vector<std::vector<std::string>> won(kThreads);
  std::vector<std::thread> threads;

  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::string worker = "host-a/gpu" + std::to_string(t);
      for (const auto& id : ids) {
        auto lease = store_->ClaimRun(id, worker, "host-a:" + std::to_string(t), Millis(10'000));
        if (!lease) {
          ++errors;
        } else if (lease.value()) {
          won[t].push_back(id);
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();

  EXPECT_EQ(errors.load(), 0);
  std::vector<std::string> all;
  for (const auto& w : won) all.insert(all.end(), w.begin(), w.end());
  EXPECT_EQ(all.size(), ids.size()) << "a run was claimed twice or never";
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(), ids.size());
  for (const auto& id : ids) EXPECT_EQ(GetOk(id).attempts, 1);
}

// The parent's threads and a child process pick with PendingRuns and claim with ClaimRun from
// the same queue, as GPU workers of two agents on one host would.
TEST_P(StoreContract, ClaimRunIsExclusiveAcrossProcesses) {
  constexpr int kRuns = 300;
  for (int i = 0; i < kRuns; ++i) SubmitOk("comfy", i % 3);
  gpuq::testing::ChildProcess child(
      {GPUQ_STORE_CLAIMER, GetParam().url(dir_.path()), "comfy", "8", (dir_ / "ready").string(),
       (dir_ / "ids").string(), "claim-run"},
      dir_ / "out");
  ASSERT_TRUE(gpuq::testing::WaitUntil([&] { return std::filesystem::exists(dir_ / "ready"); }));

  std::vector<std::string> all;
  int errors = 0;
  while (true) {
    auto pending = store_->PendingRuns({"comfy"}, 8);
    if (!pending) {
      ++errors;
      break;
    }
    if (pending.value().empty()) break;
    for (const auto& run : pending.value()) {
      auto lease = store_->ClaimRun(run.id, "host-a/gpu0", "host-a:0", Millis(10'000));
      if (!lease) {
        ++errors;
      } else if (lease.value()) {
        all.push_back(run.id);
        if (!store_->Complete(run.id, lease.value()->token, Json::object(), {})) ++errors;
      }
    }
  }
  auto status = child.Wait();
  ASSERT_EQ(status, 0) << child.Output();

  EXPECT_EQ(errors, 0);
  std::ifstream in(dir_ / "ids");
  for (std::string line; std::getline(in, line);) all.push_back(line);
  EXPECT_EQ(all.size(), static_cast<size_t>(kRuns)) << "a run was claimed twice or never";
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(), static_cast<size_t>(kRuns));
}

TEST_P(StoreContract, ClaimRunOfARunThatIsNotClaimableIsEmpty) {
  auto cancelled = SubmitOk("comfy");
  ASSERT_TRUE(store_->Cancel(cancelled));
  auto taken = SubmitOk("comfy");
  auto first = store_->ClaimRun(taken, "host-a/gpu0", "host-a:0", Millis(10'000));
  ASSERT_TRUE(first && first.value());
  auto backing_off = SubmitOk("tts");
  auto lease = ClaimOne("tts");
  ASSERT_TRUE(store_->Fail(backing_off, lease.token, "retry me", true));

  auto on_cancelled = store_->ClaimRun(cancelled, "host-a/gpu1", "host-a:1", Millis(10'000));
  auto on_taken = store_->ClaimRun(taken, "host-a/gpu1", "host-a:1", Millis(10'000));
  auto on_backing_off = store_->ClaimRun(backing_off, "host-a/gpu1", "host-a:1", Millis(10'000));
  auto on_unknown = store_->ClaimRun("00000000-0000-4000-8000-000000000000", "host-a/gpu1",
                                     "host-a:1", Millis(10'000));

  ASSERT_TRUE(on_cancelled) << on_cancelled.error().message;
  EXPECT_FALSE(on_cancelled.value());
  ASSERT_TRUE(on_taken) << on_taken.error().message;
  EXPECT_FALSE(on_taken.value());
  ASSERT_TRUE(on_backing_off) << on_backing_off.error().message;
  EXPECT_FALSE(on_backing_off.value());
  ASSERT_FALSE(on_unknown);
  EXPECT_EQ(on_unknown.error().code, Errc::kNotFound);
  EXPECT_EQ(GetOk(taken).worker, "host-a/gpu0");
  EXPECT_EQ(GetOk(cancelled).state, RunState::kCancelled);
}

TEST_P(StoreContract, WaitingReasonIsVisibleUntilTheRunIsClaimed) {
  auto id = SubmitOk("comfy");

  ASSERT_TRUE(store_->SetWaitingReason(id, std::string("needs 20000 MB, 4000 MB free")));

  EXPECT_EQ(GetOk(id).waiting_reason, "needs 20000 MB, 4000 MB free");
  EXPECT_EQ(ToJson(GetOk(id))["waiting_reason"], "needs 20000 MB, 4000 MB free");
  auto page = store_->List(RunFilter{.state = RunState::kPending});
  ASSERT_TRUE(page);
  ASSERT_EQ(page.value().runs.size(), 1u);
  EXPECT_EQ(page.value().runs[0].waiting_reason, "needs 20000 MB, 4000 MB free");
  ASSERT_TRUE(store_->SetWaitingReason(id, std::nullopt));
  EXPECT_FALSE(GetOk(id).waiting_reason);
  ASSERT_TRUE(store_->SetWaitingReason(id, std::string("gpu busy")));
  auto lease = store_->ClaimRun(id, "host-a/gpu0", "host-a:0", Millis(10'000));
  ASSERT_TRUE(lease && lease.value());
  EXPECT_FALSE(lease.value()->run.waiting_reason);
  EXPECT_FALSE(GetOk(id).waiting_reason);
  EXPECT_TRUE(ToJson(GetOk(id))["waiting_reason"].is_null());
  ASSERT_TRUE(store_->SetWaitingReason(id, std::string("too late")));
  EXPECT_FALSE(GetOk(id).waiting_reason) << "only a pending run has a waiting reason";
}

TEST_P(StoreContract, WaitingReasonIsClearedByClaimAndCancel) {
  auto claimed = SubmitOk("tts");
  clock_.Advance(Millis(1));  // FIFO: `claimed` is claimed first
  auto cancelled = SubmitOk("tts");
  ASSERT_TRUE(store_->SetWaitingReason(claimed, std::string("a")));
  ASSERT_TRUE(store_->SetWaitingReason(cancelled, std::string("b")));

  auto leases = store_->Claim(ClaimRequest{"host-a/cpu0", {"tts"}, Millis(10'000), 1});
  ASSERT_TRUE(store_->Cancel(cancelled));

  ASSERT_TRUE(leases);
  ASSERT_EQ(leases.value().size(), 1u);
  EXPECT_EQ(leases.value()[0].run.id, claimed);
  EXPECT_FALSE(GetOk(claimed).waiting_reason);
  EXPECT_FALSE(GetOk(cancelled).waiting_reason);
  EXPECT_TRUE(store_->SetWaitingReason("00000000-0000-4000-8000-000000000000", "x"));
}

TEST_P(StoreContract, PendingByTypeCountsPendingRunsAndTheirTopPriority) {
  SubmitOk("comfy", 20);
  SubmitOk("comfy", 70);
  SubmitOk("tts", 50);
  auto backing_off = SubmitOk("tts", 40);
  auto claimed = SubmitOk("video", 99);
  ASSERT_TRUE(store_->ClaimRun(claimed, "host-a/gpu0", "host-a:0", Millis(10'000)));
  auto lease = store_->ClaimRun(backing_off, "host-a/gpu0", "host-a:0", Millis(10'000));
  ASSERT_TRUE(lease && lease.value());
  ASSERT_TRUE(store_->Fail(backing_off, lease.value()->token, "retry", true));

  auto stats = store_->PendingByType();

  ASSERT_TRUE(stats) << stats.error().message;
  ASSERT_EQ(stats.value().size(), 2u);
  EXPECT_EQ(stats.value().at("comfy").runs, 2);
  EXPECT_EQ(stats.value().at("comfy").max_priority, 70);
  EXPECT_EQ(stats.value().at("tts").runs, 2);
  EXPECT_EQ(stats.value().at("tts").max_priority, 50);
}

// ---------------------------------------------------------------------------------------------
// Named leases

TEST_P(StoreContract, LeaseConflictNamesTheHolderAndTheHolderRenewsWithTheSameToken) {
  auto first = store_->AcquireLease("lock:host-a:0", "agent-a/gpu0", Millis(10'000));
  ASSERT_TRUE(first) << first.error().message;
  clock_.Advance(Millis(4'000));

  auto other = store_->AcquireLease("lock:host-a:0", "agent-b/gpu0", Millis(10'000));
  auto again = store_->AcquireLease("lock:host-a:0", "agent-a/gpu0", Millis(10'000));
  auto elsewhere = store_->AcquireLease("lock:host-a:1", "agent-b/gpu1", Millis(10'000));

  EXPECT_EQ(first.value().name, "lock:host-a:0");
  EXPECT_EQ(first.value().holder, "agent-a/gpu0");
  EXPECT_GT(first.value().token, 0);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, Errc::kConflict);
  EXPECT_THAT(other.error().message, ::testing::HasSubstr("agent-a/gpu0"));
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again.value().token, first.value().token);
  EXPECT_EQ(again.value().expires_at, clock_.Now() + Millis(10'000));
  ASSERT_TRUE(elsewhere) << elsewhere.error().message;
  EXPECT_GT(elsewhere.value().token, first.value().token);
  auto held = store_->GetLease("lock:host-a:0");
  ASSERT_TRUE(held && held.value());
  EXPECT_EQ(held.value()->holder, "agent-a/gpu0");
  EXPECT_EQ(held.value()->token, first.value().token);
  EXPECT_EQ(held.value()->expires_at, clock_.Now() + Millis(10'000));
}

TEST_P(StoreContract, AnExpiredLeaseGoesToTheNextHolderWithALargerToken) {
  auto first = store_->AcquireLease("owner:host-a:0", "agent-a", Millis(10'000));
  ASSERT_TRUE(first);
  clock_.Advance(Millis(6'000));
  ASSERT_TRUE(store_->RenewLease("owner:host-a:0", first.value().token, Millis(10'000)));
  clock_.Advance(Millis(9'000));
  EXPECT_TRUE(store_->GetLease("owner:host-a:0").value()) << "renewed: still held";
  clock_.Advance(Millis(1'001));

  auto gone = store_->GetLease("owner:host-a:0");
  auto renew_expired = store_->RenewLease("owner:host-a:0", first.value().token, Millis(10'000));
  auto second = store_->AcquireLease("owner:host-a:0", "agent-b", Millis(10'000));
  auto stale = store_->RenewLease("owner:host-a:0", first.value().token, Millis(10'000));

  ASSERT_TRUE(gone);
  EXPECT_FALSE(gone.value());
  ASSERT_FALSE(renew_expired);
  EXPECT_EQ(renew_expired.error().code, Errc::kConflict);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_GT(second.value().token, first.value().token);
  EXPECT_EQ(second.value().holder, "agent-b");
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, Errc::kConflict);
  EXPECT_TRUE(store_->ReleaseLease("owner:host-a:0", first.value().token)) << "nothing to give";
  EXPECT_EQ(store_->GetLease("owner:host-a:0").value()->holder, "agent-b");
}

TEST_P(StoreContract, LeaseTokensAreUniqueAcrossRunLeasesAndNamedLeases) {
  SubmitOk("echo");
  auto run_lease = ClaimOne("echo");
  auto lock = store_->AcquireLease("lock:host-a:0", "agent-a", Millis(10'000));
  SubmitOk("echo");
  auto next_run_lease = ClaimOne("echo");

  ASSERT_TRUE(lock);
  EXPECT_GT(lock.value().token, run_lease.token);
  EXPECT_GT(next_run_lease.token, lock.value().token);
}

TEST_P(StoreContract, ReleasedAndForceReleasedLeasesAreFree) {
  auto lock = store_->AcquireLease("lock:host-a:0", "agent-a/gpu0", Millis(10'000));
  ASSERT_TRUE(lock);

  ASSERT_TRUE(store_->ReleaseLease("lock:host-a:0", lock.value().token));

  EXPECT_FALSE(store_->GetLease("lock:host-a:0").value());
  auto again = store_->AcquireLease("lock:host-a:0", "agent-b/gpu0", Millis(10'000));
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_GT(again.value().token, lock.value().token);
  auto forced = store_->ForceReleaseLease("lock:host-a:0");
  ASSERT_TRUE(forced);
  EXPECT_TRUE(forced.value());
  EXPECT_FALSE(store_->GetLease("lock:host-a:0").value());
  EXPECT_FALSE(store_->ForceReleaseLease("lock:host-a:0").value()) << "nobody held it";
  EXPECT_FALSE(store_->RenewLease("lock:host-a:0", again.value().token, Millis(10'000)));
  auto expiring = store_->AcquireLease("lock:host-a:1", "agent-a/gpu1", Millis(1'000));
  ASSERT_TRUE(expiring);
  clock_.Advance(Millis(1'001));
  EXPECT_FALSE(store_->ForceReleaseLease("lock:host-a:1").value()) << "it had expired";
}

TEST_P(StoreContract, LeaseWithoutAPositiveTtlIsRefused) {
  auto lease = store_->AcquireLease("lock:host-a:0", "agent-a", Millis(0));

  ASSERT_FALSE(lease);
  EXPECT_EQ(lease.error().code, Errc::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Agents

TEST_P(StoreContract, AgentsAreListedByIdWhileTheirHeartbeatIsRecent) {
  ASSERT_TRUE(store_->PutAgent("host-b", Json{{"gpus", Json::array()}}));
  clock_.Advance(Millis(20'000));
  ASSERT_TRUE(store_->PutAgent("host-c", Json{{"gpus", 1}}));
  ASSERT_TRUE(store_->PutAgent("host-a", Json{{"gpus", 2}}));
  ASSERT_TRUE(store_->PutAgent("host-a", Json{{"gpus", 3}}));

  auto recent = store_->ListAgents(Millis(10'000));
  auto all = store_->ListAgents(Millis(60'000));

  ASSERT_TRUE(recent) << recent.error().message;
  ASSERT_EQ(recent.value().size(), 2u);
  EXPECT_EQ(recent.value()[0].id, "host-a");
  EXPECT_EQ(recent.value()[0].state, (Json{{"gpus", 3}}));
  EXPECT_EQ(recent.value()[0].seen_at, clock_.Now());
  EXPECT_EQ(recent.value()[1].id, "host-c");
  ASSERT_TRUE(all);
  ASSERT_EQ(all.value().size(), 3u);
  EXPECT_EQ(all.value()[1].id, "host-b");
  EXPECT_EQ(all.value()[1].seen_at, clock_.Now() - Millis(20'000));
}

// ---------------------------------------------------------------------------------------------
// Commands

TEST_P(StoreContract, CommandsAreTakenOncePerAgentInPostingOrder) {
  TimePoint deadline = clock_.Now() + Millis(30'000);
  auto first = store_->PostCommand("host-a", "service.start", Json{{"name", "comfyui"}}, deadline);
  auto other = store_->PostCommand("host-b", "release_all", Json::object(), deadline);
  auto second = store_->PostCommand("host-a", "phase.prepare", Json{{"phase", 3}}, deadline);
  auto third = store_->PostCommand("host-a", "release_all", Json::object(), deadline);
  ASSERT_TRUE(first && other && second && third);

  auto two = store_->TakeCommands("host-a", 2, Millis(0));
  auto rest = store_->TakeCommands("host-a", 10, Millis(0));
  auto none = store_->TakeCommands("host-a", 10, Millis(0));

  ASSERT_TRUE(two) << two.error().message;
  ASSERT_EQ(two.value().size(), 2u);
  EXPECT_EQ(two.value()[0].id, first.value());
  EXPECT_EQ(two.value()[0].agent, "host-a");
  EXPECT_EQ(two.value()[0].kind, "service.start");
  EXPECT_EQ(two.value()[0].args, (Json{{"name", "comfyui"}}));
  EXPECT_EQ(two.value()[0].deadline, deadline);
  EXPECT_EQ(two.value()[1].id, second.value());
  ASSERT_TRUE(rest);
  ASSERT_EQ(rest.value().size(), 1u);
  EXPECT_EQ(rest.value()[0].id, third.value());
  ASSERT_TRUE(none);
  EXPECT_THAT(none.value(), IsEmpty());
  EXPECT_EQ(store_->TakeCommands("host-b", 10, Millis(0)).value().at(0).id, other.value());
}

TEST_P(StoreContract, ACommandPastItsDeadlineIsStillDelivered) {
  auto id = store_->PostCommand("host-a", "service.stop", Json::object(), clock_.Now());
  ASSERT_TRUE(id);
  clock_.Advance(Millis(60'000));

  auto taken = store_->TakeCommands("host-a", 1, Millis(0));

  ASSERT_TRUE(taken);
  ASSERT_EQ(taken.value().size(), 1u);
  EXPECT_EQ(taken.value()[0].id, id.value());
}

TEST_P(StoreContract, TakeCommandsWaitsForAPost) {
  std::atomic<bool> started{false};
  Result<std::vector<Command>> taken = std::vector<Command>{};
  std::thread agent([&] {
    started = true;
    taken = store_->TakeCommands("host-a", 10, Millis(60'000));
  });
  ASSERT_TRUE(gpuq::testing::WaitUntil([&] { return started.load(); }));

  auto id = store_->PostCommand("host-a", "release_all", Json::object(), clock_.Now());
  agent.join();

  ASSERT_TRUE(id);
  ASSERT_TRUE(taken) << taken.error().message;
  ASSERT_EQ(taken.value().size(), 1u);
  EXPECT_EQ(taken.value()[0].id, id.value());
}

TEST_P(StoreContract, TakeCommandsReturnsEmptyAfterMaxWait) {
  auto start = std::chrono::steady_clock::now();

  auto taken = store_->TakeCommands("host-a", 10, Millis(30));

  ASSERT_TRUE(taken);
  EXPECT_THAT(taken.value(), IsEmpty());
  EXPECT_GE(std::chrono::steady_clock::now() - start, Millis(30));
}

TEST_P(StoreContract, AReplyIsReadOnce) {
  auto id = store_->PostCommand("host-a", "service.start", Json::object(), clock_.Now());
  ASSERT_TRUE(id);
  ASSERT_EQ(store_->TakeCommands("host-a", 1, Millis(0)).value().size(), 1u);

  ASSERT_TRUE(store_->ReplyCommand(id.value(), Json{{"success", true}}));
  auto reply = store_->WaitReply(id.value(), Millis(60'000));
  auto again = store_->WaitReply(id.value(), Millis(0));

  ASSERT_TRUE(reply) << reply.error().message;
  ASSERT_TRUE(reply.value());
  EXPECT_EQ(*reply.value(), (Json{{"success", true}}));
  ASSERT_TRUE(again);
  EXPECT_FALSE(again.value());
}

TEST_P(StoreContract, WaitReplyWaitsForTheAgentsReply) {
  auto id = store_->PostCommand("host-a", "phase.prepare", Json{{"phase", 4}}, clock_.Now());
  ASSERT_TRUE(id);
  std::thread agent([&] {
    auto taken = store_->TakeCommands("host-a", 1, Millis(60'000));
    ASSERT_TRUE(taken && taken.value().size() == 1u);
    EXPECT_TRUE(store_->ReplyCommand(taken.value()[0].id, Json{{"phase", 4}}));
  });

  auto reply = store_->WaitReply(id.value(), Millis(60'000));
  agent.join();

  ASSERT_TRUE(reply) << reply.error().message;
  ASSERT_TRUE(reply.value());
  EXPECT_EQ(*reply.value(), (Json{{"phase", 4}}));
}

TEST_P(StoreContract, WaitReplyIsEmptyAfterMaxWait) {
  auto start = std::chrono::steady_clock::now();

  auto reply = store_->WaitReply("00000000-0000-4000-8000-000000000000", Millis(30));

  ASSERT_TRUE(reply);
  EXPECT_FALSE(reply.value());
  EXPECT_GE(std::chrono::steady_clock::now() - start, Millis(30));
}

TEST_P(StoreContract, UnreadRepliesAndUntakenCommandsOfDeadRequestsAreDropped) {
  auto old_command =
      store_->PostCommand("host-gone", "release_all", Json::object(), clock_.Now() + Millis(1'000));
  ASSERT_TRUE(old_command);
  ASSERT_TRUE(store_->ReplyCommand("abandoned", Json{{"success", true}}));
  clock_.Advance(Millis(60 * 60 * 1000));

  ASSERT_TRUE(store_->PostCommand("host-a", "release_all", Json::object(), clock_.Now()));

  EXPECT_THAT(store_->TakeCommands("host-gone", 10, Millis(0)).value(), IsEmpty());
  EXPECT_FALSE(store_->WaitReply("abandoned", Millis(0)).value());
}

}  // namespace gpuq::store::testing
