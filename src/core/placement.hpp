#pragma once
// The placement policy of DESIGN.md "Placing work on a GPU", as pure functions of a snapshot:
// which pending run a GPU worker takes next, which GPU serves a service best, which idle
// services to stop so that it fits, and what a phase change stops and starts.
// Pure: no I/O, no clock reads (time comes in as arguments), no logging. Thread-safe.
#include <cstddef>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "core/service.hpp"

namespace gpuq {

// One service instance on one GPU as the policy sees it.
struct ServiceSlot {
  std::string service;
  int priority = 50;
  int vram_mb = 0;  // the planning figure: measured when known, else declared
  ServiceState state = ServiceState::kStopped;
  int active_runs = 0;        // runs it is serving now; > 0 means busy: never evicted
  int pending_runs = 0;       // pending runs that need this service (anywhere in the queue)
  int pending_max_priority = 0;  // highest priority among them (only meaningful when > 0 runs)
  Millis reload_time{0};      // measured start -> healthy (or the configured warm time)
  TimePoint last_used{};      // last time a run ended on it (or it became ready)
};

// One GPU as the policy sees it. `services` lists the instances on it that are resident
// (IsResident(state)); stopped ones may be listed too and are ignored for eviction.
struct GpuSnapshot {
  int index = 0;
  int total_mb = 0;
  int free_mb = 0;     // the tracker's free VRAM right now
  int reserve_mb = 0;  // never planned into
  std::vector<ServiceSlot> services;
};

// What a task of priority `task_priority` needs: service `service` with `need_mb` of VRAM.
struct PlacementRequest {
  std::string service;
  int need_mb = 0;
  int task_priority = 50;
  std::optional<std::vector<int>> allowed_gpus;  // the service's `gpus`; nullopt = any
};

struct Placement {
  enum class Kind {
    kResident,  // the service is already starting/ready/busy on `gpu`
    kStart,     // start it on `gpu` after stopping `evict` (possibly none)
    kWait,      // nothing fits now; `waiting_reason` says why
  };
  Kind kind = Kind::kWait;
  int gpu = -1;
  std::vector<std::string> evict;  // services to stop on `gpu`, cheapest set
  std::string waiting_reason;      // for people: "needs 20000 MB on gpu0: 3500 free, busy: tts"
};

// Eviction on one GPU. free after = free_mb - reserve_mb + sum(evicted vram_mb) must be
// >= need_mb. Rules:
//  - only idle resident instances (active_runs == 0, state ready) may be evicted; never busy,
//    starting or stopping ones, never the requested service itself;
//  - an idle service with pending_runs > 0 may be evicted only when task_priority >
//    its priority; one with no pending runs may be evicted for anyone;
//  - among the sets that fit, the cheapest: compare sets by (sum of pending_runs, highest
//    priority in the set, sum of reload_time, most recent last_used) lexicographically, and
//    prefer fewer services when those tie;
//  - when nothing fits, kWait with a reason naming what is missing and what blocks;
//  - the service starting/ready/busy on `gpu`: kResident whatever the memory; stopping there,
//    or `gpu` outside allowed_gpus, or need_mb > total_mb - reserve_mb: kWait.
Placement PlanOnGpu(const GpuSnapshot& gpu, const PlacementRequest& request);

// The best GPU for the request among `gpus` (filtered by allowed_gpus): a GPU where the
// service is already resident (the least loaded one if several), else one where it fits
// with no eviction (most free VRAM), else the cheapest eviction (as PlanOnGpu compares
// sets), else kWait with the reason of the GPU closest to fitting. Ties: lower index.
Placement ChooseGpu(std::span<const GpuSnapshot> gpus, const PlacementRequest& request);

// A pending run a GPU worker could take.
struct Candidate {
  std::string run_id;
  std::string service;  // the service its task type needs
  int priority = 50;
  TimePoint created_at{};
};

struct ClaimPolicy {
  // A run's effective priority grows by one for every `aging_step` it has waited, so
  // nothing starves behind a stream of higher-priority work. Zero disables aging.
  Millis aging_step{30'000};
};

// The index in `candidates` of the run to take next: highest effective priority
// (priority + waited / aging_step); among equal effective priority, one whose service is in
// `resident` (fewer swaps); then FIFO (created_at, then run_id). nullopt when empty.
std::optional<std::size_t> PickNext(std::span<const Candidate> candidates,
                                    std::span<const std::string> resident, TimePoint now,
                                    const ClaimPolicy& policy);

// A phase change on one GPU: stop every idle resident service the phase does not use
// (busy ones stay and are reported in `kept_busy`), start the phase's services that
// allowed_gpus lets on this GPU and that are not resident. `phase_services` are the
// services whose `phases` contain the phase; `allowed_gpus` maps a service to its `gpus`
// setting (a service missing from it may run on any GPU). A starting instance outside the
// phase is kept (reported in `kept_busy`: someone started it); a stopping phase service is
// started again.
struct PhasePlan {
  std::vector<std::string> stop;
  std::vector<std::string> start;
  std::vector<std::string> kept_busy;
};
PhasePlan PlanPhase(const GpuSnapshot& gpu, std::span<const std::string> phase_services,
                    const std::map<std::string, std::vector<int>>& allowed_gpus = {});

}  // namespace gpuq
