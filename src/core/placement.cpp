#include "core/placement.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <tuple>
#include <utility>

namespace gpuq {
namespace {

// The instance states a task can use or will soon be able to use. `stopping` is resident for
// VRAM accounting but is on its way out, so it does not serve a request.
bool IsUsable(ServiceState state) {
  return state == ServiceState::kStarting || state == ServiceState::kReady ||
         state == ServiceState::kBusy;
}

bool IsIdle(const ServiceSlot& slot) {
  return slot.state == ServiceState::kReady && slot.active_runs == 0;
}

bool Allowed(const std::optional<std::vector<int>>& allowed, int index) {
  return !allowed || std::find(allowed->begin(), allowed->end(), index) != allowed->end();
}

const ServiceSlot* FindSlot(const GpuSnapshot& gpu, const std::string& service) {
  for (const ServiceSlot& slot : gpu.services) {
    if (slot.service == service) return &slot;
  }
  return nullptr;
}

// The lexicographic cost of an eviction set, cheapest first (placement.hpp PlanOnGpu). The
// names come last only so that equal costs still give one deterministic answer.
struct SetCost {
  long long pending_runs = 0;
  int max_priority = std::numeric_limits<int>::min();
  long long reload_ms = 0;
  long long latest_use_ms = std::numeric_limits<long long>::min();
  std::size_t size = 0;
  std::vector<std::string> names;

  auto Key() const {
    return std::tie(pending_runs, max_priority, reload_ms, latest_use_ms, size, names);
  }
  bool operator<(const SetCost& other) const { return Key() < other.Key(); }
};

SetCost CostOf(const std::vector<const ServiceSlot*>& set) {
  SetCost cost;
  for (const ServiceSlot* slot : set) {
    cost.pending_runs += slot->pending_runs;
    cost.max_priority = std::max(cost.max_priority, slot->priority);
    cost.reload_ms += slot->reload_time.count();
    cost.latest_use_ms = std::max(cost.latest_use_ms, ToMillis(slot->last_used));
    cost.names.push_back(slot->service);
  }
  cost.size = set.size();
  std::sort(cost.names.begin(), cost.names.end());
  return cost;
}

// A single instance's cost, the same components as SetCost: the order of the greedy pass and
// of the names in Placement::evict.
bool CheaperSlot(const ServiceSlot* a, const ServiceSlot* b) {
  return std::make_tuple(a->pending_runs, a->priority, a->reload_time.count(),
                         ToMillis(a->last_used), a->service) <
         std::make_tuple(b->pending_runs, b->priority, b->reload_time.count(),
                         ToMillis(b->last_used), b->service);
}

long long SumMb(const std::vector<const ServiceSlot*>& set) {
  long long sum = 0;
  for (const ServiceSlot* slot : set) sum += slot->vram_mb;
  return sum;
}

std::string JoinNames(const std::vector<const ServiceSlot*>& slots) {
  std::string out;
  for (const ServiceSlot* slot : slots) {
    if (!out.empty()) out += ", ";
    out += slot->service;
  }
  return out;
}

// PlanOnGpu's answer plus what ChooseGpu needs to compare GPUs.
struct GpuPlan {
  Placement placement;
  SetCost cost;  // meaningful for kStart
  // For kWait: how far from fitting with every evictable service stopped; GPUs where the
  // service can never fit rank after every other.
  bool never_fits = false;
  long long shortfall_mb = 0;
};

constexpr std::size_t kMaxExhaustive = 16;

// Cheapest fitting subset of `evictable` by SetCost; empty optional when none fits. Few
// instances share a GPU, so the exhaustive search is small; beyond kMaxExhaustive a greedy pass
// in cost order bounds the work (2^16 subsets at most).
std::optional<std::vector<const ServiceSlot*>> CheapestSet(
    const std::vector<const ServiceSlot*>& evictable, long long missing_mb) {
  if (SumMb(evictable) < missing_mb) return std::nullopt;
  if (evictable.size() > kMaxExhaustive) {
    std::vector<const ServiceSlot*> set;
    long long freed = 0;
    for (const ServiceSlot* slot : evictable) {  // already in cost order
      if (freed >= missing_mb) break;
      set.push_back(slot);
      freed += slot->vram_mb;
    }
    // Drop what turned out not to be needed, most expensive first.
    for (std::size_t i = set.size(); i-- > 0;) {
      if (freed - set[i]->vram_mb >= missing_mb) {
        freed -= set[i]->vram_mb;
        set.erase(set.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    return set;
  }
  std::optional<std::vector<const ServiceSlot*>> best;
  SetCost best_cost;
  const std::size_t n = evictable.size();
  for (std::uint32_t mask = 1; mask < (std::uint32_t{1} << n); ++mask) {
    std::vector<const ServiceSlot*> set;
    long long freed = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (mask & (std::uint32_t{1} << i)) {
        set.push_back(evictable[i]);
        freed += evictable[i]->vram_mb;
      }
    }
    if (freed < missing_mb) continue;
    SetCost cost = CostOf(set);
    if (!best || cost < best_cost) {
      best = std::move(set);
      best_cost = std::move(cost);
    }
  }
  return best;
}

GpuPlan Plan(const GpuSnapshot& gpu, const PlacementRequest& request) {
  GpuPlan plan;
  Placement& placement = plan.placement;
  placement.gpu = gpu.index;

  if (!Allowed(request.allowed_gpus, gpu.index)) {
    placement.kind = Placement::Kind::kWait;
    placement.waiting_reason =
        fmt::format("{} may not run on gpu{} (its gpus setting)", request.service, gpu.index);
    plan.never_fits = true;
    plan.shortfall_mb = std::numeric_limits<long long>::max();
    return plan;
  }

  if (const ServiceSlot* own = FindSlot(gpu, request.service)) {
    if (IsUsable(own->state)) {
      placement.kind = Placement::Kind::kResident;
      return plan;
    }
    if (own->state == ServiceState::kStopping) {
      // Starting a second instance now would race the old one for its port and memory; the
      // caller retries once the stop has settled.
      placement.kind = Placement::Kind::kWait;
      placement.waiting_reason =
          fmt::format("{} is stopping on gpu{}; it can start again once its memory is back",
                      request.service, gpu.index);
      return plan;
    }
  }

  const long long capacity = static_cast<long long>(gpu.total_mb) - gpu.reserve_mb;
  if (request.need_mb > capacity) {
    placement.kind = Placement::Kind::kWait;
    placement.waiting_reason =
        fmt::format("{} needs {} MB on gpu{}: it never fits there ({} MB total, {} MB reserve)",
                    request.service, request.need_mb, gpu.index, gpu.total_mb, gpu.reserve_mb);
    plan.never_fits = true;
    plan.shortfall_mb = request.need_mb - capacity;
    return plan;
  }

  const long long available = static_cast<long long>(gpu.free_mb) - gpu.reserve_mb;
  const long long missing = request.need_mb - available;
  if (missing <= 0) {
    placement.kind = Placement::Kind::kStart;
    return plan;
  }

  std::vector<const ServiceSlot*> evictable;
  std::vector<const ServiceSlot*> busy;
  std::vector<const ServiceSlot*> starting;
  std::vector<const ServiceSlot*> stopping;
  std::vector<const ServiceSlot*> protected_slots;
  for (const ServiceSlot& slot : gpu.services) {
    if (slot.service == request.service || !IsResident(slot.state)) continue;
    if (slot.state == ServiceState::kBusy || slot.active_runs > 0) {
      busy.push_back(&slot);
    } else if (slot.state == ServiceState::kStarting) {
      starting.push_back(&slot);
    } else if (slot.state == ServiceState::kStopping) {
      stopping.push_back(&slot);
    } else if (slot.pending_runs > 0 && request.task_priority <= slot.priority) {
      protected_slots.push_back(&slot);
    } else if (IsIdle(slot)) {
      evictable.push_back(&slot);
    }
  }
  std::sort(evictable.begin(), evictable.end(), CheaperSlot);

  if (auto set = CheapestSet(evictable, missing)) {
    std::sort(set->begin(), set->end(), CheaperSlot);
    placement.kind = Placement::Kind::kStart;
    for (const ServiceSlot* slot : *set) placement.evict.push_back(slot->service);
    plan.cost = CostOf(*set);
    return plan;
  }

  placement.kind = Placement::Kind::kWait;
  plan.shortfall_mb = missing - SumMb(evictable);
  std::string reason =
      fmt::format("{} needs {} MB on gpu{}: {} MB free after the {} MB reserve", request.service,
                  request.need_mb, gpu.index, std::max(0LL, available), gpu.reserve_mb);
  if (!evictable.empty()) {
    reason += fmt::format("; stopping every idle service ({}) frees only {} MB",
                          JoinNames(evictable), SumMb(evictable));
  }
  if (!busy.empty()) reason += "; busy: " + JoinNames(busy);
  if (!starting.empty()) reason += "; starting: " + JoinNames(starting);
  if (!stopping.empty()) reason += "; stopping: " + JoinNames(stopping);
  if (!protected_slots.empty()) {
    reason += "; protected by queued work: ";
    for (std::size_t i = 0; i < protected_slots.size(); ++i) {
      const ServiceSlot* slot = protected_slots[i];
      if (i > 0) reason += ", ";
      reason += fmt::format("{} (priority {} >= task {})", slot->service, slot->priority,
                            request.task_priority);
    }
  }
  placement.waiting_reason = std::move(reason);
  return plan;
}

}  // namespace

Placement PlanOnGpu(const GpuSnapshot& gpu, const PlacementRequest& request) {
  return Plan(gpu, request).placement;
}

Placement ChooseGpu(std::span<const GpuSnapshot> gpus, const PlacementRequest& request) {
  std::vector<const GpuSnapshot*> eligible;
  for (const GpuSnapshot& gpu : gpus) {
    if (Allowed(request.allowed_gpus, gpu.index)) eligible.push_back(&gpu);
  }
  std::sort(eligible.begin(), eligible.end(),
            [](const GpuSnapshot* a, const GpuSnapshot* b) { return a->index < b->index; });
  if (eligible.empty()) {
    Placement wait;
    wait.waiting_reason =
        gpus.empty() ? fmt::format("{} has no GPU to run on", request.service)
                     : fmt::format("{} may run on none of this host's GPUs (its gpus setting)",
                                   request.service);
    return wait;
  }

  // 1. Already resident: the instance serving the fewest runs.
  const GpuSnapshot* resident = nullptr;
  int resident_load = 0;
  for (const GpuSnapshot* gpu : eligible) {
    const ServiceSlot* slot = FindSlot(*gpu, request.service);
    if (slot == nullptr || !IsUsable(slot->state)) continue;
    if (resident == nullptr || slot->active_runs < resident_load) {
      resident = gpu;
      resident_load = slot->active_runs;
    }
  }
  if (resident != nullptr) {
    Placement placement;
    placement.kind = Placement::Kind::kResident;
    placement.gpu = resident->index;
    return placement;
  }

  std::vector<GpuPlan> plans;
  plans.reserve(eligible.size());
  for (const GpuSnapshot* gpu : eligible) plans.push_back(Plan(*gpu, request));

  // 2. Fits with no eviction: the most room left after the reserve.
  const GpuPlan* best = nullptr;
  long long best_room = 0;
  for (std::size_t i = 0; i < plans.size(); ++i) {
    const GpuPlan& plan = plans[i];
    if (plan.placement.kind != Placement::Kind::kStart || !plan.placement.evict.empty()) continue;
    long long room = static_cast<long long>(eligible[i]->free_mb) - eligible[i]->reserve_mb;
    if (best == nullptr || room > best_room) {
      best = &plan;
      best_room = room;
    }
  }
  if (best != nullptr) return best->placement;

  // 3. The cheapest eviction.
  for (const GpuPlan& plan : plans) {
    if (plan.placement.kind != Placement::Kind::kStart) continue;
    if (best == nullptr || plan.cost.Key() < best->cost.Key()) best = &plan;
  }
  if (best != nullptr) return best->placement;

  // 4. Wait, explained by the GPU closest to fitting.
  for (const GpuPlan& plan : plans) {
    auto key = std::make_pair(plan.never_fits, plan.shortfall_mb);
    if (best == nullptr || key < std::make_pair(best->never_fits, best->shortfall_mb)) {
      best = &plan;
    }
  }
  Placement wait = best->placement;
  wait.gpu = -1;
  if (plans.size() > 1) {
    wait.waiting_reason += fmt::format(" (closest of {} GPUs)", plans.size());
  }
  return wait;
}

std::optional<std::size_t> PickNext(std::span<const Candidate> candidates,
                                    std::span<const std::string> resident, TimePoint now,
                                    const ClaimPolicy& policy) {
  if (candidates.empty()) return std::nullopt;
  auto effective = [&](const Candidate& c) -> long long {
    if (policy.aging_step.count() <= 0) return c.priority;
    long long waited = std::max<long long>(0, (now - c.created_at).count());
    return c.priority + waited / policy.aging_step.count();
  };
  auto is_resident = [&](const Candidate& c) {
    return std::find(resident.begin(), resident.end(), c.service) != resident.end();
  };
  // Larger is better for the first two components, smaller for the FIFO ones.
  auto key = [&](const Candidate& c) {
    return std::make_tuple(-effective(c), !is_resident(c), ToMillis(c.created_at),
                           std::string_view(c.run_id));
  };
  std::size_t best = 0;
  auto best_key = key(candidates[0]);
  for (std::size_t i = 1; i < candidates.size(); ++i) {
    auto k = key(candidates[i]);
    if (k < best_key) {
      best = i;
      best_key = k;
    }
  }
  return best;
}

PhasePlan PlanPhase(const GpuSnapshot& gpu, std::span<const std::string> phase_services,
                    const std::map<std::string, std::vector<int>>& allowed_gpus) {
  auto in_phase = [&](const std::string& name) {
    return std::find(phase_services.begin(), phase_services.end(), name) != phase_services.end();
  };
  PhasePlan plan;
  for (const ServiceSlot& slot : gpu.services) {
    if (!IsResident(slot.state) || in_phase(slot.service)) continue;
    if (slot.state == ServiceState::kBusy || slot.active_runs > 0 ||
        slot.state == ServiceState::kStarting) {
      // A starting instance was started for someone (a claimed run or a start command);
      // stopping it under them would waste the start-up. It is reported with the busy ones.
      plan.kept_busy.push_back(slot.service);
    } else if (slot.state == ServiceState::kReady) {
      plan.stop.push_back(slot.service);
    }
    // kStopping: already on its way out.
  }
  for (const std::string& name : phase_services) {
    auto allowed = allowed_gpus.find(name);
    if (allowed != allowed_gpus.end() && std::find(allowed->second.begin(), allowed->second.end(),
                                                   gpu.index) == allowed->second.end()) {
      continue;
    }
    const ServiceSlot* slot = FindSlot(gpu, name);
    // A stopping instance is on its way out: the phase needs a fresh one after it.
    if (slot != nullptr && IsUsable(slot->state)) continue;
    if (std::find(plan.start.begin(), plan.start.end(), name) != plan.start.end()) continue;
    plan.start.push_back(name);
  }
  return plan;
}

}  // namespace gpuq
