#include "core/placement.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace gpuq {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;
using Kind = Placement::Kind;
using S = ServiceState;
using namespace std::chrono_literals;

// --- Builders: a slot is idle and ready unless a builder says otherwise. ---

ServiceSlot Slot(std::string name, int mb, ServiceState state, int priority = 50) {
  ServiceSlot slot;
  slot.service = std::move(name);
  slot.vram_mb = mb;
  slot.state = state;
  slot.priority = priority;
  slot.active_runs = state == S::kBusy ? 1 : 0;
  return slot;
}
ServiceSlot Idle(std::string name, int mb, int priority = 50) {
  return Slot(std::move(name), mb, S::kReady, priority);
}
ServiceSlot Busy(std::string name, int mb, int priority = 50) {
  return Slot(std::move(name), mb, S::kBusy, priority);
}
ServiceSlot Queued(ServiceSlot slot, int runs, int max_priority) {
  slot.pending_runs = runs;
  slot.pending_max_priority = max_priority;
  return slot;
}
ServiceSlot Reload(ServiceSlot slot, Millis reload) {
  slot.reload_time = reload;
  return slot;
}
ServiceSlot UsedAt(ServiceSlot slot, long long ms) {
  slot.last_used = FromMillis(ms);
  return slot;
}
ServiceSlot Active(ServiceSlot slot, int runs) {
  slot.active_runs = runs;
  return slot;
}

// A GPU whose free memory is what its resident instances leave, as a tracker would see it.
GpuSnapshot Gpu(int index, int total_mb, int reserve_mb, std::vector<ServiceSlot> services) {
  GpuSnapshot gpu;
  gpu.index = index;
  gpu.total_mb = total_mb;
  gpu.reserve_mb = reserve_mb;
  gpu.free_mb = total_mb;
  for (const ServiceSlot& slot : services) {
    if (IsResident(slot.state)) gpu.free_mb -= slot.vram_mb;
  }
  gpu.services = std::move(services);
  return gpu;
}
GpuSnapshot Gpu(int total_mb, int reserve_mb, std::vector<ServiceSlot> services) {
  return Gpu(0, total_mb, reserve_mb, std::move(services));
}

PlacementRequest Request(std::string service, int need_mb, int task_priority = 50) {
  PlacementRequest request;
  request.service = std::move(service);
  request.need_mb = need_mb;
  request.task_priority = task_priority;
  return request;
}
PlacementRequest AllowedOn(PlacementRequest request, std::vector<int> gpus) {
  request.allowed_gpus = std::move(gpus);
  return request;
}

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kResident:
      return "resident";
    case Kind::kStart:
      return "start";
    case Kind::kWait:
      return "wait";
  }
  return "?";
}

// One row of a PlanOnGpu table.
struct PlanCase {
  std::string what;
  GpuSnapshot gpu;
  PlacementRequest request;
  Kind kind;
  std::vector<std::string> evict;  // compared as a set
};

void ExpectPlans(const std::vector<PlanCase>& table) {
  for (const PlanCase& row : table) {
    SCOPED_TRACE(row.what);

    Placement placement = PlanOnGpu(row.gpu, row.request);

    EXPECT_EQ(KindName(placement.kind), std::string(KindName(row.kind)))
        << placement.waiting_reason;
    EXPECT_THAT(placement.evict, UnorderedElementsAreArray(row.evict));
    if (placement.kind == Kind::kWait) {
      EXPECT_FALSE(placement.waiting_reason.empty());
    } else {
      EXPECT_EQ(placement.gpu, row.gpu.index);
    }
  }
}

// 24000 MB, no reserve: "x" needs 10000 and finds 4000 free beside a 20000 MB neighbour.
constexpr int kTotal = 24000;

TEST(PlanOnGpu, EvictsOnlyIdleReadyInstances) {
  GpuSnapshot error_still_holding = Gpu(kTotal, 0, {Slot("a", 20000, S::kError)});
  error_still_holding.free_mb = 4000;  // the tracker still sees its memory

  ExpectPlans({
      {"idle ready", Gpu(kTotal, 0, {Idle("a", 20000)}), Request("x", 10000), Kind::kStart, {"a"}},
      {"busy", Gpu(kTotal, 0, {Busy("a", 20000)}), Request("x", 10000), Kind::kWait, {}},
      {"ready but serving a run",
       Gpu(kTotal, 0, {Active(Idle("a", 20000), 1)}),
       Request("x", 10000),
       Kind::kWait,
       {}},
      {"starting",
       Gpu(kTotal, 0, {Slot("a", 20000, S::kStarting)}),
       Request("x", 10000),
       Kind::kWait,
       {}},
      {"stopping",
       Gpu(kTotal, 0, {Slot("a", 20000, S::kStopping)}),
       Request("x", 10000),
       Kind::kWait,
       {}},
      {"error", error_still_holding, Request("x", 10000), Kind::kWait, {}},
      {"busy never, idle one instead",
       Gpu(kTotal, 0, {Busy("a", 10000, 1), Idle("b", 10000, 100)}),
       Request("x", 10000, 1),
       Kind::kStart,
       {"b"}},
  });
}

TEST(PlanOnGpu, PriorityProtectsQueuedWork) {
  ServiceSlot vidi = Queued(Idle("vidi", 20000, 40), 2, 40);

  ExpectPlans({
      {"lower task", Gpu(kTotal, 0, {vidi}), Request("x", 10000, 30), Kind::kWait, {}},
      {"equal task", Gpu(kTotal, 0, {vidi}), Request("x", 10000, 40), Kind::kWait, {}},
      {"higher task", Gpu(kTotal, 0, {vidi}), Request("x", 10000, 41), Kind::kStart, {"vidi"}},
      {"unqueued, lowest task",
       Gpu(kTotal, 0, {Idle("vidi", 20000, 40)}),
       Request("x", 10000, 0),
       Kind::kStart,
       {"vidi"}},
      {"unqueued, top priority service",
       Gpu(kTotal, 0, {Idle("vidi", 20000, 1000)}),
       Request("x", 10000, 0),
       Kind::kStart,
       {"vidi"}},
      {"protected one kept even when the rest is too little",
       Gpu(kTotal, 0, {Queued(Idle("vidi", 10000, 40), 1, 40), Idle("ollama", 5000, 10)}),
       Request("x", 20000, 30),
       Kind::kWait,
       {}},
      {"unqueued one is enough",
       Gpu(kTotal, 0, {Queued(Idle("vidi", 10000, 40), 1, 40), Idle("ollama", 10000, 10)}),
       Request("x", 14000, 30),
       Kind::kStart,
       {"ollama"}},
  });
}

// Two idle 10000 MB instances "a" and "b" that differ in the components named; "x" needs one
// of them gone (4000 free, needs 14000).
TEST(PlanOnGpu, EvictsTheCheapestSetByEachCostComponentInTurn) {
  auto two = [](ServiceSlot a, ServiceSlot b) { return Gpu(kTotal, 0, {a, b}); };
  PlacementRequest x = Request("x", 14000, 100);

  ExpectPlans({
      {"fewer pending runs",
       two(Queued(Idle("a", 10000), 1, 50), Idle("b", 10000)),
       x,
       Kind::kStart,
       {"b"}},
      {"lower priority", two(Idle("a", 10000, 60), Idle("b", 10000, 20)), x, Kind::kStart, {"b"}},
      {"shorter reload",
       two(Reload(Idle("a", 10000), 30s), Reload(Idle("b", 10000), 5s)),
       x,
       Kind::kStart,
       {"b"}},
      {"least recently used",
       two(UsedAt(Idle("a", 10000), 2000), UsedAt(Idle("b", 10000), 1000)),
       x,
       Kind::kStart,
       {"b"}},
      {"pending runs before priority",
       two(Idle("a", 10000, 90), Queued(Idle("b", 10000, 10), 1, 10)),
       x,
       Kind::kStart,
       {"a"}},
      {"priority before reload",
       two(Reload(Idle("a", 10000, 20), 60s), Reload(Idle("b", 10000, 30), 1s)),
       x,
       Kind::kStart,
       {"a"}},
      {"reload before recency",
       two(UsedAt(Reload(Idle("a", 10000), 1s), 9000), UsedAt(Reload(Idle("b", 10000), 9s), 1)),
       x,
       Kind::kStart,
       {"a"}},
  });
}

TEST(PlanOnGpu, ComparesWholeSetsAndPrefersFewerServicesOnTies) {
  ExpectPlans({
      {"one big over two small on a tie",
       Gpu(kTotal, 0, {Idle("a", 10000), Idle("b", 5000), Idle("c", 5000)}),
       Request("x", 14000, 100),
       Kind::kStart,
       {"a"}},
      {"two quick reloads over one slow",
       Gpu(kTotal, 0,
           {Reload(Idle("a", 10000), 60s), Reload(Idle("b", 5000), 5s),
            Reload(Idle("c", 5000), 5s)}),
       Request("x", 14000, 100),
       Kind::kStart,
       {"b", "c"}},
      {"no more than needed",
       Gpu(kTotal, 0, {Idle("a", 4000), Idle("b", 4000), Idle("c", 4000), Idle("d", 4000)}),
       Request("x", 14000, 100),
       Kind::kStart,
       {"a", "b"}},
  });
}

TEST(PlanOnGpu, NeverEvictsTheRequestedServiceItself) {
  GpuSnapshot gpu = Gpu(kTotal, 0, {Slot("x", 20000, S::kError), Idle("a", 4000)});
  gpu.free_mb = 0;  // the failed instance's memory is not back yet

  Placement placement = PlanOnGpu(gpu, Request("x", 20000, 100));

  EXPECT_EQ(placement.kind, Kind::kWait);
  EXPECT_THAT(placement.evict, IsEmpty());
}

TEST(PlanOnGpu, NeverStartsWhatWouldNotFitCountingTheReserve) {
  ExpectPlans({
      {"exactly fits under the reserve",
       Gpu(24576, 512, {}),
       Request("x", 24064),
       Kind::kStart,
       {}},
      {"one MB over", Gpu(24576, 512, {}), Request("x", 24065), Kind::kWait, {}},
      {"free exactly needed",
       Gpu(24576, 512, {Busy("a", 20480)}),
       Request("x", 3584),
       Kind::kStart,
       {}},
      {"one MB short, nothing idle",
       Gpu(24576, 512, {Busy("a", 20480)}),
       Request("x", 3585),
       Kind::kWait,
       {}},
      {"one MB short, a tiny idle one",
       Gpu(24576, 512, {Busy("a", 20479), Idle("t", 1)}),
       Request("x", 3585),
       Kind::kStart,
       {"t"}},
      {"evicting everything idle is still short",
       Gpu(24576, 512, {Busy("a", 16000), Idle("b", 2000), Idle("c", 2000)}),
       Request("x", 8600),
       Kind::kWait,
       {}},
  });
}

TEST(PlanOnGpu, ResidentServiceIsResidentWhateverTheMemory) {
  ExpectPlans({
      {"ready, GPU full",
       Gpu(kTotal, 0, {Idle("x", 24000)}),
       Request("x", 30000),
       Kind::kResident,
       {}},
      {"busy", Gpu(kTotal, 0, {Busy("x", 20000)}), Request("x", 20000), Kind::kResident, {}},
      {"starting",
       Gpu(kTotal, 0, {Slot("x", 20000, S::kStarting)}),
       Request("x", 20000),
       Kind::kResident,
       {}},
      {"stopping: wait for it to go",
       Gpu(kTotal, 0, {Slot("x", 20000, S::kStopping)}),
       Request("x", 20000),
       Kind::kWait,
       {}},
      {"stopped: start",
       Gpu(kTotal, 0, {Slot("x", 20000, S::kStopped)}),
       Request("x", 20000),
       Kind::kStart,
       {}},
      {"error: start again",
       Gpu(kTotal, 0, {Slot("x", 20000, S::kError)}),
       Request("x", 20000),
       Kind::kStart,
       {}},
  });
}

TEST(PlanOnGpu, NeedBeyondTotalMinusReserveNeverFits) {
  Placement placement = PlanOnGpu(Gpu(24576, 512, {}), Request("comfyui", 24100));

  EXPECT_EQ(placement.kind, Kind::kWait);
  EXPECT_THAT(placement.waiting_reason, HasSubstr("never fits"));
  EXPECT_THAT(placement.waiting_reason, HasSubstr("24576 MB total"));
}

TEST(PlanOnGpu, WaitingReasonNamesWhatIsMissingAndWhatBlocks) {
  GpuSnapshot gpu = Gpu(24576, 512,
                        {Busy("cosyvoice", 4000, 50), Queued(Idle("vidi", 4000, 40), 1, 40),
                         Slot("x", 12480, S::kStarting)});
  gpu.services.pop_back();  // memory held by something gpuq does not manage

  Placement placement = PlanOnGpu(gpu, Request("comfyui", 20000, 30));

  EXPECT_EQ(placement.kind, Kind::kWait);
  EXPECT_EQ(placement.waiting_reason,
            "comfyui needs 20000 MB on gpu0: 3584 MB free after the 512 MB reserve; busy: "
            "cosyvoice; protected by queued work: vidi (priority 40 >= task 30)");
}

TEST(PlanOnGpu, WaitingReasonSaysWhatIdleServicesWouldFree) {
  GpuSnapshot gpu =
      Gpu(24576, 512, {Busy("a", 16000), Idle("b", 2000), Slot("c", 2000, S::kStarting)});

  Placement placement = PlanOnGpu(gpu, Request("x", 8600));

  EXPECT_THAT(placement.waiting_reason, HasSubstr("(b) frees only 2000 MB"));
  EXPECT_THAT(placement.waiting_reason, HasSubstr("busy: a"));
  EXPECT_THAT(placement.waiting_reason, HasSubstr("starting: c"));
}

TEST(PlanOnGpu, FallsBackToAGreedyPassBeyondSixteenEvictableServices) {
  std::vector<ServiceSlot> slots;
  for (int i = 0; i < 20; ++i) {
    slots.push_back(Idle("s" + std::to_string(10 + i), 1000, 10 + i));  // s10 is cheapest
  }
  GpuSnapshot gpu = Gpu(kTotal, 0, slots);  // 4000 free

  Placement placement = PlanOnGpu(gpu, Request("x", 7000, 100));

  EXPECT_EQ(placement.kind, Kind::kStart);
  EXPECT_THAT(placement.evict, ElementsAre("s10", "s11", "s12"));
}

TEST(PlanOnGpu, GpuOutsideAllowedGpusWaits) {
  Placement placement = PlanOnGpu(Gpu(kTotal, 0, {}), AllowedOn(Request("x", 100), {1}));

  EXPECT_EQ(placement.kind, Kind::kWait);
  EXPECT_THAT(placement.waiting_reason, HasSubstr("gpu0"));
}

// --- ChooseGpu ---

struct ChooseCase {
  std::string what;
  std::vector<GpuSnapshot> gpus;
  PlacementRequest request;
  Kind kind;
  int gpu;  // expected GPU index (-1 for kWait)
  std::vector<std::string> evict;
};

TEST(ChooseGpu, PrefersResidentThenFitsThenCheapestEviction) {
  const std::vector<ChooseCase> table = {
      {"resident beats fits",
       {Gpu(0, kTotal, 0, {Idle("x", 10000), Busy("y", 14000)}), Gpu(1, kTotal, 0, {})},
       Request("x", 10000),
       Kind::kResident,
       0,
       {}},
      {"least loaded resident instance",
       {Gpu(0, kTotal, 0, {Active(Busy("x", 10000), 2)}),
        Gpu(1, kTotal, 0, {Active(Busy("x", 10000), 1)})},
       Request("x", 10000),
       Kind::kResident,
       1,
       {}},
      {"fits beats eviction",
       {Gpu(0, kTotal, 0, {Idle("a", 20000)}), Gpu(1, kTotal, 0, {Busy("b", 10000)})},
       Request("x", 10000),
       Kind::kStart,
       1,
       {}},
      {"most free among those that fit",
       {Gpu(0, kTotal, 0, {Busy("a", 10000)}), Gpu(1, kTotal, 0, {Busy("b", 4000)})},
       Request("x", 10000),
       Kind::kStart,
       1,
       {}},
      {"equal free: lower index, whatever the input order",
       {Gpu(3, kTotal, 0, {}), Gpu(2, kTotal, 0, {})},
       Request("x", 10000),
       Kind::kStart,
       2,
       {}},
      {"cheapest eviction across GPUs",
       {Gpu(0, kTotal, 0, {Idle("a", 20000, 60)}), Gpu(1, kTotal, 0, {Idle("b", 20000, 20)})},
       Request("x", 10000, 100),
       Kind::kStart,
       1,
       {"b"}},
      {"a GPU where it waits loses to one where it can evict",
       {Gpu(0, kTotal, 0, {Busy("a", 20000)}), Gpu(1, kTotal, 0, {Idle("b", 20000)})},
       Request("x", 10000),
       Kind::kStart,
       1,
       {"b"}},
  };
  for (const ChooseCase& row : table) {
    SCOPED_TRACE(row.what);

    Placement placement = ChooseGpu(row.gpus, row.request);

    EXPECT_EQ(KindName(placement.kind), std::string(KindName(row.kind)))
        << placement.waiting_reason;
    EXPECT_EQ(placement.gpu, row.gpu);
    EXPECT_THAT(placement.evict, UnorderedElementsAreArray(row.evict));
  }
}

TEST(ChooseGpu, HonoursAllowedGpus) {
  std::vector<GpuSnapshot> gpus = {Gpu(0, kTotal, 0, {Idle("x", 10000)}),
                                   Gpu(1, kTotal, 0, {Idle("a", 20000)})};

  Placement on_one = ChooseGpu(gpus, AllowedOn(Request("x", 10000), {1}));
  Placement on_none = ChooseGpu(gpus, AllowedOn(Request("x", 10000), {7}));

  EXPECT_EQ(on_one.kind, Kind::kStart);
  EXPECT_EQ(on_one.gpu, 1);
  EXPECT_THAT(on_one.evict, ElementsAre("a"));
  EXPECT_EQ(on_none.kind, Kind::kWait);
  EXPECT_FALSE(on_none.waiting_reason.empty());
}

TEST(ChooseGpu, WaitsWithTheReasonOfTheGpuClosestToFitting) {
  std::vector<GpuSnapshot> gpus = {Gpu(0, 8000, 0, {}), Gpu(1, kTotal, 0, {Busy("a", 16000)}),
                                   Gpu(2, kTotal, 0, {Busy("b", 20000)})};

  Placement placement = ChooseGpu(gpus, Request("x", 10000));

  EXPECT_EQ(placement.kind, Kind::kWait);
  EXPECT_EQ(placement.gpu, -1);
  EXPECT_THAT(placement.waiting_reason, HasSubstr("on gpu1"));
  EXPECT_THAT(placement.waiting_reason, HasSubstr("busy: a"));
}

TEST(ChooseGpu, NoGpuWaits) {
  Placement placement = ChooseGpu({}, Request("x", 1));

  EXPECT_EQ(placement.kind, Kind::kWait);
  EXPECT_FALSE(placement.waiting_reason.empty());
}

// --- PickNext ---

constexpr long long kNow = 1'790'000'000'000;

Candidate Pending(std::string id, std::string service, int priority, long long waited_ms) {
  Candidate c;
  c.run_id = std::move(id);
  c.service = std::move(service);
  c.priority = priority;
  c.created_at = FromMillis(kNow - waited_ms);
  return c;
}

struct PickCase {
  std::string what;
  std::vector<Candidate> candidates;
  std::vector<std::string> resident;
  Millis aging_step;
  std::string expected;  // run id
};

TEST(PickNext, OrdersByPriorityThenResidentThenFifoWithAging) {
  const Millis kNoAging{0};
  const Millis k30s = 30s;
  const std::vector<PickCase> table = {
      {"higher priority first",
       {Pending("low", "a", 10, 5000), Pending("high", "b", 50, 0)},
       {},
       kNoAging,
       "high"},
      {"resident preferred among equal priority",
       {Pending("old", "a", 50, 5000), Pending("new", "b", 50, 0)},
       {"b"},
       kNoAging,
       "new"},
      {"resident does not beat higher priority",
       {Pending("res", "b", 49, 5000), Pending("prio", "a", 50, 0)},
       {"b"},
       kNoAging,
       "prio"},
      {"FIFO among equals",
       {Pending("new", "a", 50, 0), Pending("old", "a", 50, 10)},
       {},
       kNoAging,
       "old"},
      {"run id breaks a created_at tie",
       {Pending("r2", "a", 50, 10), Pending("r1", "a", 50, 10)},
       {},
       kNoAging,
       "r1"},
      {"aging promotes an old low-priority run",
       {Pending("new-high", "a", 50, 0), Pending("old-low", "b", 10, 31 * 60'000)},
       {},
       k30s,
       "old-low"},
      {"aging disabled with zero",
       {Pending("new-high", "a", 50, 0), Pending("old-low", "b", 10, 31 * 60'000)},
       {},
       kNoAging,
       "new-high"},
      {"aging not yet enough",
       {Pending("new-high", "a", 50, 0), Pending("old-low", "b", 10, 19 * 60'000)},
       {},
       k30s,
       "new-high"},
      {"aged to equal: resident preferred",
       {Pending("aged", "a", 40, 5 * 60'000), Pending("fresh", "b", 50, 0)},
       {"b"},
       k30s,
       "fresh"},
      {"aged to equal: FIFO",
       {Pending("fresh", "b", 50, 0), Pending("aged", "a", 40, 5 * 60'000)},
       {},
       k30s,
       "aged"},
  };
  for (const PickCase& row : table) {
    SCOPED_TRACE(row.what);
    ClaimPolicy policy;
    policy.aging_step = row.aging_step;

    auto picked = PickNext(row.candidates, row.resident, FromMillis(kNow), policy);

    ASSERT_TRUE(picked.has_value());
    EXPECT_EQ(row.candidates[*picked].run_id, row.expected);
  }
}

TEST(PickNext, NothingToPickIsNullopt) {
  EXPECT_FALSE(PickNext({}, {}, FromMillis(kNow), ClaimPolicy{}).has_value());
}

// --- PlanPhase ---

TEST(PlanPhase, StopsIdleOutsidersKeepsBusyOnesAndStartsMissingOnes) {
  GpuSnapshot gpu = Gpu(kTotal, 0,
                        {Idle("ollama", 4000), Busy("vidi", 4000), Idle("cosyvoice", 4000),
                         Slot("old", 1000, S::kStopped), Slot("going", 1000, S::kStopping)});
  std::vector<std::string> phase = {"cosyvoice", "comfyui"};

  PhasePlan plan = PlanPhase(gpu, phase);

  EXPECT_THAT(plan.stop, ElementsAre("ollama"));
  EXPECT_THAT(plan.kept_busy, ElementsAre("vidi"));
  EXPECT_THAT(plan.start, ElementsAre("comfyui"));
}

TEST(PlanPhase, StartsOnlyServicesAllowedOnThisGpu) {
  GpuSnapshot gpu = Gpu(1, kTotal, 0, {});
  std::vector<std::string> phase = {"comfyui", "cosyvoice", "vidi"};
  std::map<std::string, std::vector<int>> allowed = {{"comfyui", {0}}, {"vidi", {0, 1}}};

  PhasePlan plan = PlanPhase(gpu, phase, allowed);

  EXPECT_THAT(plan.start, ElementsAre("cosyvoice", "vidi"));
  EXPECT_THAT(plan.stop, IsEmpty());
}

TEST(PlanPhase, KeepsStartingOutsidersAndRestartsAStoppingPhaseService) {
  GpuSnapshot gpu = Gpu(kTotal, 0,
                        {Slot("warming", 4000, S::kStarting), Slot("comfyui", 8000, S::kStopping),
                         Slot("vidi", 4000, S::kStarting)});
  std::vector<std::string> phase = {"comfyui", "vidi"};

  PhasePlan plan = PlanPhase(gpu, phase);

  EXPECT_THAT(plan.stop, IsEmpty());
  EXPECT_THAT(plan.kept_busy, ElementsAre("warming"));
  EXPECT_THAT(plan.start, ElementsAre("comfyui"));
}

}  // namespace
}  // namespace gpuq
