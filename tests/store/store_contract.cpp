// StoreContract: the behaviour every Store backend owes its callers (see store/store.hpp).
#include "store/store_contract.hpp"

#include <algorithm>
#include <atomic>
#include <fstream>
#include <set>
#include <thread>
#include <vector>

#include <gmock/gmock.h>

// NewRun{.type = ...} leaves the other fields at their defaults on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include "support/child_process.hpp"
#include "support/wait.hpp"

namespace gpuq::store::testing {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

void StoreContract::SetUp() {
  auto store = GetParam().open(dir_.path(), clock_);
  ASSERT_TRUE(store) << store.error().message;
  store_ = std::move(store).value();
}

void StoreContract::Reopen() {
  store_.reset();
  auto store = GetParam().open(dir_.path(), clock_);
  ASSERT_TRUE(store) << store.error().message;
  store_ = std::move(store).value();
}

std::string StoreContract::SubmitOk(NewRun run) {
  auto submitted = store_->Submit(run);
  EXPECT_TRUE(submitted) << submitted.error().message;
  return submitted ? submitted.value().id : std::string();
}

std::string StoreContract::SubmitOk(const std::string& type, int priority) {
  NewRun run;
  run.type = type;
  run.priority = priority;
  return SubmitOk(std::move(run));
}

Lease StoreContract::ClaimOne(const std::string& type, const std::string& worker, Millis ttl) {
  auto leases = store_->Claim(ClaimRequest{worker, {type}, ttl, 1});
  EXPECT_TRUE(leases) << leases.error().message;
  if (!leases || leases.value().size() != 1) {
    ADD_FAILURE() << "expected one lease";
    return Lease{};
  }
  return leases.value().front();
}

gpuq::Run StoreContract::GetOk(const std::string& id) {
  auto run = store_->Get(id);
  EXPECT_TRUE(run) << run.error().message;
  return run ? run.value() : gpuq::Run{};
}

namespace {

std::vector<std::string> Ids(const std::vector<Lease>& leases) {
  std::vector<std::string> ids;
  for (const auto& l : leases) ids.push_back(l.run.id);
  return ids;
}

ClaimRequest Request(std::vector<std::string> types, int max_runs = 1,
                     std::string worker = "host-a/cpu0") {
  return ClaimRequest{std::move(worker), std::move(types), Millis(10'000), max_runs};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Submit, Get

TEST_P(StoreContract, SubmittedRunIsPendingWithItsFields) {
  NewRun in;
  in.type = "echo";
  in.priority = 70;
  in.payload = Json{{"text", "hi"}};
  in.max_attempts = 5;
  in.timeout_s = 60;
  in.parent_run_id = "p-1";

  auto id = SubmitOk(in);
  gpuq::Run run = GetOk(id);

  EXPECT_EQ(run.id, id);
  EXPECT_EQ(run.type, "echo");
  EXPECT_EQ(run.priority, 70);
  EXPECT_EQ(run.state, RunState::kPending);
  EXPECT_EQ(run.payload, (Json{{"text", "hi"}}));
  EXPECT_TRUE(run.result.is_null());
  EXPECT_EQ(run.max_attempts, 5);
  EXPECT_EQ(run.timeout_s, 60);
  EXPECT_EQ(run.parent_run_id, "p-1");
  EXPECT_EQ(run.attempts, 0);
  EXPECT_EQ(run.created_at, clock_.Now());
  EXPECT_FALSE(run.started_at);
  EXPECT_FALSE(run.finished_at);
}

TEST_P(StoreContract, UnknownIdIsNotFoundEverywhere) {
  const std::string id = "00000000-0000-4000-8000-000000000000";

  EXPECT_EQ(store_->Get(id).error().code, Errc::kNotFound);
  EXPECT_EQ(store_->Get(id).error().message, "run " + id + " not found");
  EXPECT_EQ(store_->Cancel(id).error().code, Errc::kNotFound);
  EXPECT_EQ(store_->Retry(id).error().code, Errc::kNotFound);
  EXPECT_EQ(store_->Heartbeat(id, 1, Millis(1000)).error().code, Errc::kNotFound);
  EXPECT_EQ(store_->Complete(id, 1, Json(), {}).error().code, Errc::kNotFound);
}

TEST_P(StoreContract, SubmitRejectsAnEmptyType) {
  auto submitted = store_->Submit(NewRun{});

  ASSERT_FALSE(submitted);
  EXPECT_EQ(submitted.error().code, Errc::kInvalidArgument);
}

TEST_P(StoreContract, RunsSurviveReopen) {
  auto id = SubmitOk("echo");
  auto lease = ClaimOne("echo");
  ASSERT_TRUE(store_->Complete(id, lease.token, Json{{"ok", true}}, {"runs/x/out.png"}));

  Reopen();

  gpuq::Run run = GetOk(id);
  EXPECT_EQ(run.state, RunState::kCompleted);
  EXPECT_EQ(run.result, (Json{{"ok", true}}));
  EXPECT_THAT(run.files, ElementsAre("runs/x/out.png"));
}

TEST_P(StoreContract, SubmitIsDurableOnceItReturns) {
  std::string id;
  {
    auto store = GetParam().open(dir_.path(), clock_);
    ASSERT_TRUE(store);
    auto submitted = store.value()->Submit(NewRun{.type = "echo"});
    ASSERT_TRUE(submitted);
    id = submitted.value().id;
  }  // destroyed right after the call: nothing may still be in flight

  store_.reset();
  Reopen();

  EXPECT_EQ(GetOk(id).state, RunState::kPending);
}

// ---------------------------------------------------------------------------------------------
// Claim

TEST_P(StoreContract, ClaimsHighestPriorityFirstThenOldestFirst) {
  auto low = SubmitOk("echo", 10);
  clock_.Advance(Millis(1));
  auto high_old = SubmitOk("echo", 90);
  clock_.Advance(Millis(1));
  auto mid = SubmitOk("echo", 50);
  clock_.Advance(Millis(1));
  auto high_new = SubmitOk("echo", 90);

  auto first = store_->Claim(Request({"echo"}, 3));
  auto rest = store_->Claim(Request({"echo"}, 3));

  ASSERT_TRUE(first && rest);
  EXPECT_THAT(Ids(first.value()), ElementsAre(high_old, high_new, mid));
  EXPECT_THAT(Ids(rest.value()), ElementsAre(low));
}

TEST_P(StoreContract, ClaimIsFifoWithinAMillisecond) {
  std::vector<std::string> submitted;
  for (int i = 0; i < 12; ++i) submitted.push_back(SubmitOk(i % 2 == 0 ? "a" : "b", 50));
  auto pending = store_->PendingRuns({"a", "b"}, 20);

  std::vector<std::string> claimed;
  for (int i = 0; i < 4; ++i) {
    auto leases = store_->Claim(Request({"a", "b"}, 3));
    ASSERT_TRUE(leases) << leases.error().message;
    for (const auto& id : Ids(leases.value())) claimed.push_back(id);
  }

  EXPECT_THAT(claimed, ElementsAreArray(submitted));
  ASSERT_TRUE(pending);
  std::vector<std::string> of_a;
  for (const auto& run : pending.value()) {
    if (run.type == "a") of_a.push_back(run.id);
  }
  EXPECT_THAT(of_a, ElementsAre(submitted[0], submitted[2], submitted[4], submitted[6],
                                submitted[8], submitted[10]));
}

TEST_P(StoreContract, ClaimMergesSeveralTypesInPriorityOrder) {
  auto a = SubmitOk("a", 10);
  clock_.Advance(Millis(1));
  auto b = SubmitOk("b", 60);
  clock_.Advance(Millis(1));
  SubmitOk("c", 99);
  clock_.Advance(Millis(1));
  auto a2 = SubmitOk("a", 60);

  auto leases = store_->Claim(Request({"a", "b"}, 10));

  ASSERT_TRUE(leases);
  EXPECT_THAT(Ids(leases.value()), ElementsAre(b, a2, a));
}

TEST_P(StoreContract, ClaimedRunIsProcessingWithALeaseAndFreshTokens) {
  auto id = SubmitOk("echo");
  clock_.Advance(Millis(1));
  SubmitOk("echo");

  auto leases = store_->Claim(Request({"echo"}, 2, "host-a/gpu0"));

  ASSERT_TRUE(leases);
  ASSERT_EQ(leases.value().size(), 2u);
  const Lease& lease = leases.value()[0];
  EXPECT_EQ(lease.run.id, id);
  EXPECT_EQ(lease.run.state, RunState::kProcessing);
  EXPECT_EQ(lease.run.attempts, 1);
  EXPECT_EQ(lease.run.worker, "host-a/gpu0");
  EXPECT_EQ(lease.run.started_at, clock_.Now());
  EXPECT_NE(leases.value()[0].token, leases.value()[1].token);
  EXPECT_EQ(GetOk(id).state, RunState::kProcessing);
}

TEST_P(StoreContract, ClaimIsEmptyWhenNothingClaimable) {
  SubmitOk("other");

  auto leases = store_->Claim(Request({"echo"}, 4));

  ASSERT_TRUE(leases);
  EXPECT_THAT(leases.value(), IsEmpty());
}

// 10,000 runs, drained by 4 threads here and 2 other processes on the same data: every run is
// handed out exactly once and completes exactly once.
TEST_P(StoreContract, ClaimIsExclusiveAcrossThreadsAndProcesses) {
  constexpr int kRuns = 10'000;
  constexpr int kSubmitters = 8;
  constexpr int kThreads = 4;
  constexpr int kBatch = 16;
  {
    std::vector<std::thread> submitters;
    std::atomic<int> failures{0};
    for (int t = 0; t < kSubmitters; ++t) {
      submitters.emplace_back([&, t] {
        for (int i = t; i < kRuns; i += kSubmitters) {
          if (!store_->Submit(NewRun{.type = "echo", .priority = i % 3})) ++failures;
        }
      });
    }
    for (auto& t : submitters) t.join();
    ASSERT_EQ(failures.load(), 0);
  }
  std::string url = GetParam().url(dir_.path());
  std::vector<std::unique_ptr<gpuq::testing::ChildProcess>> children;
  for (int c = 0; c < 2; ++c) {
    std::string n = std::to_string(c);
    children.push_back(std::make_unique<gpuq::testing::ChildProcess>(
        std::vector<std::string>{GPUQ_STORE_CLAIMER, url, "echo", std::to_string(kBatch),
                                 (dir_ / ("ready" + n)).string(), (dir_ / ("ids" + n)).string()},
        dir_ / ("out" + n)));
  }
  ASSERT_TRUE(gpuq::testing::WaitUntil([&] {
    return std::filesystem::exists(dir_ / "ready0") && std::filesystem::exists(dir_ / "ready1");
  }));

  std::vector<std::vector<std::string>> claimed(kThreads);
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto request = Request({"echo"}, kBatch, "host-a/cpu" + std::to_string(t));
      while (true) {
        auto leases = store_->Claim(request);
        if (!leases) {
          ++errors;
          return;
        }
        if (leases.value().empty()) return;
        for (const auto& lease : leases.value()) {
          claimed[t].push_back(lease.run.id);
          if (!store_->Complete(lease.run.id, lease.token, Json::object(), {})) ++errors;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int c = 0; c < 2; ++c) {
    auto status = children[c]->Wait();
    ASSERT_EQ(status, 0) << children[c]->Output();
  }

  EXPECT_EQ(errors.load(), 0);
  std::vector<std::string> all;
  std::vector<size_t> per_claimer;
  for (const auto& ids : claimed) {
    all.insert(all.end(), ids.begin(), ids.end());
    per_claimer.push_back(ids.size());
  }
  for (int c = 0; c < 2; ++c) {
    std::ifstream in(dir_ / ("ids" + std::to_string(c)));
    size_t n = 0;
    for (std::string line; std::getline(in, line);) {
      all.push_back(line);
      ++n;
    }
    per_claimer.push_back(n);
  }
  std::set<std::string> unique(all.begin(), all.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kRuns)) << "a run was claimed twice or never";
  EXPECT_EQ(unique.size(), static_cast<size_t>(kRuns));
  auto left = store_->Claim(Request({"echo"}, kBatch));
  ASSERT_TRUE(left);
  EXPECT_THAT(left.value(), IsEmpty());
  auto completed = store_->List(RunFilter{.state = RunState::kCompleted, .limit = 1});
  ASSERT_TRUE(completed);
  ASSERT_EQ(completed.value().runs.size(), 1u);
  EXPECT_EQ(completed.value().runs[0].attempts, 1);
  ::testing::Test::RecordProperty("per_claimer", ::testing::PrintToString(per_claimer));
}

// ---------------------------------------------------------------------------------------------
// Leases: fencing, expiry, heartbeats

TEST_P(StoreContract, StaleFencingTokenCannotComplete) {
  auto id = SubmitOk(NewRun{.type = "echo", .max_attempts = 3});
  auto first = ClaimOne("echo", "host-a/cpu0", Millis(1000));
  clock_.Advance(Millis(1001));
  ASSERT_EQ(store_->RequeueExpired().value(), 1);
  clock_.Advance(RetryBackoff(1));
  auto second = ClaimOne("echo", "host-b/cpu0");
  ASSERT_EQ(second.run.id, id);

  auto stale = store_->Complete(id, first.token, Json{{"by", "a"}}, {});
  auto fresh = store_->Complete(id, second.token, Json{{"by", "b"}}, {});

  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, Errc::kConflict);
  EXPECT_THAT(stale.error().message, ::testing::HasSubstr("lease lost"));
  ASSERT_TRUE(fresh) << fresh.error().message;
  EXPECT_EQ(GetOk(id).result, (Json{{"by", "b"}}));
  EXPECT_GT(second.token, first.token);
  EXPECT_EQ(store_->Heartbeat(id, second.token, Millis(1000)).error().code, Errc::kConflict);
}

TEST_P(StoreContract, ExpiredLeaseGoesBackToPendingWithBackoff) {
  auto id = SubmitOk(NewRun{.type = "echo", .max_attempts = 3});
  ClaimOne("echo", "host-a/cpu0", Millis(1000));
  clock_.Advance(Millis(1000));
  ASSERT_EQ(store_->RequeueExpired().value(), 0) << "not expired at exactly its deadline";
  clock_.Advance(Millis(1));

  auto moved = store_->RequeueExpired();

  ASSERT_TRUE(moved);
  EXPECT_EQ(moved.value(), 1);
  gpuq::Run run = GetOk(id);
  EXPECT_EQ(run.state, RunState::kPending);
  EXPECT_EQ(run.attempts, 1);
  ASSERT_TRUE(run.not_before);
  EXPECT_EQ(*run.not_before, clock_.Now() + RetryBackoff(1));
  EXPECT_TRUE(run.error);
  EXPECT_THAT(store_->Claim(Request({"echo"})).value(), IsEmpty()) << "claimable during backoff";
  clock_.Advance(RetryBackoff(1));
  auto again = ClaimOne("echo");
  EXPECT_EQ(again.run.id, id);
  EXPECT_EQ(again.run.attempts, 2);
}

TEST_P(StoreContract, ExpiredLeaseFailsTheRunAtMaxAttempts) {
  auto id = SubmitOk(NewRun{.type = "echo", .max_attempts = 2});
  for (int attempt = 1; attempt <= 2; ++attempt) {
    ClaimOne("echo", "host-a/cpu0", Millis(1000));
    clock_.Advance(Millis(1001));
    ASSERT_EQ(store_->RequeueExpired().value(), 1);
    clock_.Advance(RetryBackoff(attempt));
  }

  gpuq::Run run = GetOk(id);

  EXPECT_EQ(run.state, RunState::kFailed);
  EXPECT_EQ(run.attempts, 2);
  EXPECT_EQ(run.error, "lease expired after 2 attempts");
  EXPECT_TRUE(run.finished_at);
  EXPECT_EQ(store_->RequeueExpired().value(), 0);
}

TEST_P(StoreContract, RequeueHeldByGivesBackOnlyThatWorkersRuns) {
  auto mine = SubmitOk("echo");
  clock_.Advance(Millis(1));
  auto theirs = SubmitOk("echo");
  auto mine_lease = ClaimOne("echo", "host-a/gpu0");
  ClaimOne("echo", "host-b/gpu0");
  ASSERT_EQ(mine_lease.run.id, mine);

  auto moved = store_->RequeueHeldBy("host-a/");

  ASSERT_TRUE(moved);
  EXPECT_EQ(moved.value(), 1);
  gpuq::Run run = GetOk(mine);
  EXPECT_EQ(run.state, RunState::kPending);
  EXPECT_EQ(run.attempts, 1);
  EXPECT_TRUE(run.not_before);
  EXPECT_EQ(GetOk(theirs).state, RunState::kProcessing);
  EXPECT_EQ(store_->Complete(mine, mine_lease.token, Json(), {}).error().code, Errc::kConflict);
}

TEST_P(StoreContract, HeartbeatExtendsTheLeaseAndReportsCancelRequest) {
  auto id = SubmitOk("echo");
  auto lease = ClaimOne("echo", "host-a/cpu0", Millis(1000));
  clock_.Advance(Millis(900));

  auto beat = store_->Heartbeat(id, lease.token, Millis(1000));
  clock_.Advance(Millis(900));

  ASSERT_TRUE(beat) << beat.error().message;
  EXPECT_FALSE(beat.value().cancel_requested);
  EXPECT_EQ(store_->RequeueExpired().value(), 0) << "the heartbeat extended the lease";
  ASSERT_TRUE(store_->Cancel(id));
  auto after_cancel = store_->Heartbeat(id, lease.token, Millis(1000));
  ASSERT_TRUE(after_cancel);
  EXPECT_TRUE(after_cancel.value().cancel_requested);
  EXPECT_EQ(store_->Heartbeat(id, lease.token + 1000, Millis(1000)).error().code,
            Errc::kConflict);
}

TEST_P(StoreContract, ProgressIsStoredAndClearedByTheNextAttempt) {
  auto id = SubmitOk("echo");
  auto lease = ClaimOne("echo");

  ASSERT_TRUE(store_->ReportProgress(id, lease.token, Progress{0.4, "step 8/20"}));

  gpuq::Run run = GetOk(id);
  EXPECT_EQ(run.progress.fraction, 0.4);
  EXPECT_EQ(run.progress.message, "step 8/20");
  EXPECT_EQ(store_->ReportProgress(id, lease.token + 1, Progress{}).error().code,
            Errc::kConflict);
  ASSERT_TRUE(store_->Release(id, lease.token));
  auto next = ClaimOne("echo");
  EXPECT_FALSE(next.run.progress.fraction);
  EXPECT_EQ(next.run.progress.message, "");
}

TEST_P(StoreContract, ReleaseReturnsTheRunWithoutCountingTheAttempt) {
  auto id = SubmitOk("echo");
  auto lease = ClaimOne("echo");

  ASSERT_TRUE(store_->Release(id, lease.token));

  gpuq::Run run = GetOk(id);
  EXPECT_EQ(run.state, RunState::kPending);
  EXPECT_EQ(run.attempts, 0);
  EXPECT_EQ(ClaimOne("echo").run.id, id) << "claimable again at once";
  EXPECT_EQ(store_->Release(id, lease.token).error().code, Errc::kConflict);
}

// ---------------------------------------------------------------------------------------------
// Complete, Fail, Cancel, Retry

TEST_P(StoreContract, CompleteStoresResultAndFilesAndClearsTheLease) {
  auto id = SubmitOk("echo");
  auto lease = ClaimOne("echo");
  clock_.Advance(Millis(500));

  ASSERT_TRUE(store_->Complete(id, lease.token, Json{{"text", "hi"}}, {"runs/a/b.txt"}));

  gpuq::Run run = GetOk(id);
  EXPECT_EQ(run.state, RunState::kCompleted);
  EXPECT_EQ(run.result, (Json{{"text", "hi"}}));
  EXPECT_THAT(run.files, ElementsAre("runs/a/b.txt"));
  EXPECT_EQ(run.finished_at, clock_.Now());
  EXPECT_EQ(store_->Complete(id, lease.token, Json(), {}).error().code, Errc::kConflict);
  clock_.Advance(Millis(60'000));
  EXPECT_EQ(store_->RequeueExpired().value(), 0);
}

TEST_P(StoreContract, RetryableFailureGoesBackToPendingWithBackoffUntilMaxAttempts) {
  auto id = SubmitOk(NewRun{.type = "echo", .max_attempts = 2});
  auto first = ClaimOne("echo");

  auto retrying = store_->Fail(id, first.token, "boom 1", /*retryable=*/true);

  ASSERT_TRUE(retrying);
  EXPECT_EQ(retrying.value(), FailOutcome::kRetrying);
  gpuq::Run run = GetOk(id);
  EXPECT_EQ(run.state, RunState::kPending);
  EXPECT_EQ(run.error, "boom 1");
  EXPECT_EQ(run.not_before, clock_.Now() + RetryBackoff(1));
  clock_.Advance(RetryBackoff(1));
  auto second = ClaimOne("echo");
  auto failed = store_->Fail(id, second.token, "boom 2", /*retryable=*/true);
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed.value(), FailOutcome::kFailed);
  run = GetOk(id);
  EXPECT_EQ(run.state, RunState::kFailed);
  EXPECT_EQ(run.error, "boom 2");
  EXPECT_TRUE(run.finished_at);
}

TEST_P(StoreContract, NonRetryableFailureFailsAtOnce) {
  auto id = SubmitOk(NewRun{.type = "echo", .max_attempts = 5});
  auto lease = ClaimOne("echo");

  auto outcome = store_->Fail(id, lease.token, "bad input", /*retryable=*/false);

  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome.value(), FailOutcome::kFailed);
  EXPECT_EQ(GetOk(id).state, RunState::kFailed);
}

TEST_P(StoreContract, CancelPendingRunCancelsItAtOnce) {
  auto id = SubmitOk("echo");

  auto cancelled = store_->Cancel(id);

  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled.value().state, RunState::kCancelled);
  EXPECT_TRUE(cancelled.value().finished_at);
  EXPECT_THAT(store_->Claim(Request({"echo"})).value(), IsEmpty());
}

TEST_P(StoreContract, CancelProcessingRunAsksTheWorkerToStop) {
  auto id = SubmitOk("echo");
  auto lease = ClaimOne("echo");

  auto requested = store_->Cancel(id);

  ASSERT_TRUE(requested);
  EXPECT_EQ(requested.value().state, RunState::kProcessing);
  EXPECT_TRUE(requested.value().cancel_requested);
  ASSERT_TRUE(store_->MarkCancelled(id, lease.token));
  gpuq::Run run = GetOk(id);
  EXPECT_EQ(run.state, RunState::kCancelled);
  EXPECT_TRUE(run.finished_at);
}

TEST_P(StoreContract, CancelFinishedRunConflicts) {
  auto id = SubmitOk("echo");
  auto lease = ClaimOne("echo");
  ASSERT_TRUE(store_->Complete(id, lease.token, Json(), {}));

  auto cancelled = store_->Cancel(id);

  ASSERT_FALSE(cancelled);
  EXPECT_EQ(cancelled.error().code, Errc::kConflict);
  EXPECT_EQ(cancelled.error().message, "run " + id + " is already completed");
}

TEST_P(StoreContract, RetryPutsAFailedRunBackToPendingAsNew) {
  auto id = SubmitOk(NewRun{.type = "echo", .max_attempts = 1});
  auto lease = ClaimOne("echo");
  ASSERT_TRUE(store_->Fail(id, lease.token, "boom", true));

  auto retried = store_->Retry(id);

  ASSERT_TRUE(retried) << retried.error().message;
  EXPECT_EQ(retried.value().state, RunState::kPending);
  EXPECT_EQ(retried.value().attempts, 0);
  EXPECT_FALSE(retried.value().error);
  EXPECT_FALSE(retried.value().finished_at);
  EXPECT_TRUE(retried.value().result.is_null());
  EXPECT_EQ(ClaimOne("echo").run.id, id);
}

TEST_P(StoreContract, RetryOfACancelledRunWorksAndOfAnActiveRunConflicts) {
  auto cancelled = SubmitOk("echo");
  auto active = SubmitOk("other");
  ASSERT_TRUE(store_->Cancel(cancelled));

  auto retried = store_->Retry(cancelled);
  auto refused = store_->Retry(active);

  ASSERT_TRUE(retried);
  EXPECT_EQ(retried.value().state, RunState::kPending);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::kConflict);
}

// ---------------------------------------------------------------------------------------------
// Idempotency

TEST_P(StoreContract, IdempotencyKeyReturnsTheFirstRun) {
  NewRun run{.type = "echo", .idempotency_key = "k-1"};

  auto first = store_->Submit(run);
  auto second = store_->Submit(run);

  ASSERT_TRUE(first && second);
  EXPECT_TRUE(first.value().created);
  EXPECT_FALSE(second.value().created);
  EXPECT_EQ(second.value().id, first.value().id);
  EXPECT_EQ(store_->List(RunFilter{}).value().runs.size(), 1u);
}

TEST_P(StoreContract, IdempotencyKeyRaceCreatesOneRun) {
  constexpr int kThreads = 8;
  std::vector<Result<Submitted>> results(kThreads, Error{Errc::kInternal, "not run"});
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ++ready;
      while (ready.load() < kThreads) {
      }
      results[t] = store_->Submit(NewRun{.type = "echo", .idempotency_key = "race"});
    });
  }
  for (auto& t : threads) t.join();

  std::set<std::string> ids;
  int created = 0;
  for (const auto& r : results) {
    ASSERT_TRUE(r) << r.error().message;
    ids.insert(r.value().id);
    created += r.value().created ? 1 : 0;
  }
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(created, 1);
  EXPECT_EQ(store_->List(RunFilter{}).value().runs.size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// List

TEST_P(StoreContract, ListFiltersByStateTypeAndParent) {
  auto a = SubmitOk(NewRun{.type = "a", .parent_run_id = "p"});
  clock_.Advance(Millis(1));
  auto b = SubmitOk("b");
  clock_.Advance(Millis(1));
  auto a2 = SubmitOk("a");
  ClaimOne("b");

  auto by_type = store_->List(RunFilter{.type = "a"});
  auto by_state = store_->List(RunFilter{.state = RunState::kProcessing});
  auto by_parent = store_->List(RunFilter{.parent_run_id = "p"});
  auto all = store_->List(RunFilter{});

  ASSERT_TRUE(by_type && by_state && by_parent && all);
  auto ids = [](const RunPage& page) {
    std::vector<std::string> out;
    for (const auto& r : page.runs) out.push_back(r.id);
    return out;
  };
  EXPECT_THAT(ids(by_type.value()), ElementsAre(a2, a));
  EXPECT_THAT(ids(by_state.value()), ElementsAre(b));
  EXPECT_THAT(ids(by_parent.value()), ElementsAre(a));
  EXPECT_THAT(ids(all.value()), ElementsAre(a2, b, a));
  EXPECT_FALSE(all.value().next_before);
}

TEST_P(StoreContract, ListPagesNewestFirstWithoutGapsOrDuplicates) {
  std::vector<std::string> submitted;
  for (int i = 0; i < 25; ++i) {
    submitted.push_back(SubmitOk("echo"));
    if (i % 3 == 0) clock_.Advance(Millis(1));  // some share a millisecond
  }

  std::vector<std::string> ids;
  std::optional<std::string> before;
  int pages = 0;
  do {
    auto page = store_->List(RunFilter{.limit = 10, .before = before});
    ASSERT_TRUE(page) << page.error().message;
    ASSERT_LE(page.value().runs.size(), 10u);
    for (const auto& r : page.value().runs) ids.push_back(r.id);
    before = page.value().next_before;
    ++pages;
  } while (before && pages < 10);

  // Newest first; runs of the same millisecond newest first too, across page boundaries.
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(ids, ElementsAreArray(submitted.rbegin(), submitted.rend()));
}

TEST_P(StoreContract, ListClampsTheLimit) {
  for (int i = 0; i < 3; ++i) SubmitOk("echo");

  auto zero = store_->List(RunFilter{.limit = 0});

  ASSERT_TRUE(zero);
  EXPECT_EQ(zero.value().runs.size(), 1u);
  EXPECT_TRUE(zero.value().next_before);
}

TEST_P(StoreContract, ListRejectsAMalformedCursor) {
  for (const char* bad : {"", "nonsense", "12x_abc", "_abc", "123_"}) {
    auto page = store_->List(RunFilter{.before = std::string(bad)});

    ASSERT_FALSE(page) << bad;
    EXPECT_EQ(page.error().code, Errc::kInvalidArgument) << bad;
  }
}

// ---------------------------------------------------------------------------------------------
// depends_on

TEST_P(StoreContract, DependentRunWaitsUntilAllParentsComplete) {
  auto p1 = SubmitOk("echo");
  auto p2 = SubmitOk("echo");
  auto child = SubmitOk(NewRun{.type = "child", .depends_on = {p1, p2}});
  gpuq::Run waiting = GetOk(child);
  ASSERT_EQ(waiting.state, RunState::kWaiting);
  EXPECT_EQ(waiting.waiting_reason, "waiting for 2 parent runs");
  EXPECT_THAT(waiting.depends_on, ElementsAre(p1, p2));
  auto l1 = ClaimOne("echo");
  auto l2 = ClaimOne("echo");

  ASSERT_TRUE(store_->Complete(l1.run.id, l1.token, Json(), {}));
  EXPECT_EQ(GetOk(child).state, RunState::kWaiting);
  EXPECT_THAT(store_->Claim(Request({"child"})).value(), IsEmpty());
  ASSERT_TRUE(store_->Complete(l2.run.id, l2.token, Json(), {}));

  gpuq::Run ready = GetOk(child);
  EXPECT_EQ(ready.state, RunState::kPending);
  EXPECT_FALSE(ready.waiting_reason);
  EXPECT_EQ(ClaimOne("child").run.id, child);
}

TEST_P(StoreContract, DependentRunFailsWhenAParentFailsForGood) {
  auto parent = SubmitOk(NewRun{.type = "echo", .max_attempts = 1});
  auto child = SubmitOk(NewRun{.type = "child", .depends_on = {parent}});
  auto grandchild = SubmitOk(NewRun{.type = "child", .depends_on = {child}});
  auto lease = ClaimOne("echo");

  ASSERT_TRUE(store_->Fail(parent, lease.token, "boom", /*retryable=*/true));

  gpuq::Run run = GetOk(child);
  EXPECT_EQ(run.state, RunState::kFailed);
  ASSERT_TRUE(run.error);
  EXPECT_THAT(*run.error, ::testing::HasSubstr(parent));
  EXPECT_TRUE(run.finished_at);
  EXPECT_EQ(GetOk(grandchild).state, RunState::kFailed);
}

TEST_P(StoreContract, DependentRunFailsWhenAParentIsCancelled) {
  auto parent = SubmitOk("echo");
  auto child = SubmitOk(NewRun{.type = "child", .depends_on = {parent}});

  ASSERT_TRUE(store_->Cancel(parent));

  gpuq::Run run = GetOk(child);
  EXPECT_EQ(run.state, RunState::kFailed);
  EXPECT_THAT(run.error.value_or(""), ::testing::HasSubstr(parent));
}

TEST_P(StoreContract, DependingOnACompletedParentStartsPending) {
  auto parent = SubmitOk("echo");
  auto lease = ClaimOne("echo");
  ASSERT_TRUE(store_->Complete(parent, lease.token, Json(), {}));

  auto child = SubmitOk(NewRun{.type = "child", .depends_on = {parent}});

  EXPECT_EQ(GetOk(child).state, RunState::kPending);
}

TEST_P(StoreContract, SubmitRejectsAnUnknownDependency) {
  auto submitted =
      store_->Submit(NewRun{.type = "child", .depends_on = {"00000000-0000-4000-8000-000000000000"}});

  ASSERT_FALSE(submitted);
  EXPECT_EQ(submitted.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(store_->List(RunFilter{}).value().runs, IsEmpty()) << "nothing was written";
}

// ---------------------------------------------------------------------------------------------
// Purge, WaitForWork, Ping

TEST_P(StoreContract, PurgeDeletesOnlyFinishedRunsOlderThanTheCutoff) {
  auto old_done = SubmitOk("echo");
  auto lease = ClaimOne("echo");
  ASSERT_TRUE(store_->Complete(old_done, lease.token, Json(), {}));
  auto old_cancelled = SubmitOk("echo");
  ASSERT_TRUE(store_->Cancel(old_cancelled));
  auto old_pending = SubmitOk("other");
  clock_.Advance(Millis(10'000));
  TimePoint cutoff = clock_.Now();
  auto new_done = SubmitOk("echo");
  auto lease2 = ClaimOne("echo");
  ASSERT_TRUE(store_->Complete(new_done, lease2.token, Json(), {}));

  auto purged = store_->PurgeFinishedBefore(cutoff);

  ASSERT_TRUE(purged);
  EXPECT_THAT(purged.value(), UnorderedElementsAreArray({old_done, old_cancelled}));
  EXPECT_EQ(store_->Get(old_done).error().code, Errc::kNotFound);
  EXPECT_TRUE(store_->Get(old_pending));
  EXPECT_TRUE(store_->Get(new_done));
}

// A worker's loop: claim, find nothing, wait. A submit landing anywhere after that claim,
// even before the wait starts, must end the wait.
TEST_P(StoreContract, WaitForWorkWakesOnSubmit) {
  std::atomic<bool> claimed{false};
  std::atomic<bool> woke{false};
  std::thread waiter([&] {
    auto leases = store_->Claim(Request({"echo"}));
    EXPECT_TRUE(leases && leases.value().empty());
    claimed = true;
    store_->WaitForWork(Millis(60'000));
    woke = true;
  });
  ASSERT_TRUE(gpuq::testing::WaitUntil([&] { return claimed.load(); }));

  SubmitOk("echo");

  EXPECT_TRUE(gpuq::testing::WaitUntil([&] { return woke.load(); }, std::chrono::seconds(30)));
  waiter.join();
}

TEST_P(StoreContract, WaitForWorkReturnsAfterMaxWaitWhenNothingHappens) {
  ASSERT_THAT(store_->Claim(Request({"echo"})).value(), IsEmpty());
  auto start = std::chrono::steady_clock::now();

  store_->WaitForWork(Millis(30));

  EXPECT_GE(std::chrono::steady_clock::now() - start, Millis(30));
}

TEST_P(StoreContract, PingAnswers) { EXPECT_TRUE(store_->Ping()); }


// ---------------------------------------------------------------------------------------------
// Run stamps: a backend may say "unchanged" only when nothing changed (any backend may always
// say "changed").

namespace {

// Reads `id` twice (the second read has the first's stamp as its hint) and returns the stamp.
RunStamp Stamp(Store& store, const std::string& id) {
  RunStamp stamp;
  for (int i = 0; i < 2; ++i) {
    auto run = store.GetStamped(id, stamp);
    EXPECT_TRUE(run) << run.error().message;
    if (run) {
      EXPECT_EQ(run.value().id, id);
    }
  }
  return stamp;
}

}  // namespace

TEST_P(StoreContract, RunStampsNeverHideAChange) {
  std::string id = SubmitOk("echo");
  RunStamp stamp = Stamp(*store_, id);

  Lease lease = ClaimOne("echo");
  ASSERT_EQ(lease.run.id, id);
  EXPECT_FALSE(store_->RunUnchanged(stamp)) << "after the claim";

  stamp = Stamp(*store_, id);
  ASSERT_TRUE(store_->ReportProgress(id, lease.token, Progress{0.5, "half"}));
  EXPECT_FALSE(store_->RunUnchanged(stamp)) << "after progress";

  stamp = Stamp(*store_, id);
  ASSERT_TRUE(store_->Complete(id, lease.token, Json{{"ok", true}}, {}));
  EXPECT_FALSE(store_->RunUnchanged(stamp)) << "after completion";

  // A second store on the same data stands in for another process.
  auto other = GetParam().open(dir_.path(), clock_);
  ASSERT_TRUE(other) << other.error().message;
  std::string second = SubmitOk("echo");
  stamp = Stamp(*store_, second);
  ASSERT_TRUE(other.value()->Cancel(second));
  EXPECT_FALSE(store_->RunUnchanged(stamp)) << "after a cancel through another store";

  stamp = Stamp(*store_, second);
  ASSERT_TRUE(other.value()->Retry(second));
  EXPECT_FALSE(store_->RunUnchanged(stamp)) << "after a retry through another store";
  EXPECT_EQ(GetOk(second).state, RunState::kPending);

  RunStamp unknown;
  auto missing = store_->GetStamped("00000000-0000-4000-8000-000000000000", unknown);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::kNotFound);
  EXPECT_FALSE(store_->RunUnchanged(unknown));
}

}  // namespace gpuq::store::testing
