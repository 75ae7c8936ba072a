#pragma once
// Awaitable store writes that park no thread while the store commits.
#include <boost/asio/awaitable.hpp>

#include "core/result.hpp"
#include "store/store.hpp"

namespace gpuq::api {

// store.SubmitAsync as an awaitable: the awaiting coroutine resumes on its own executor once
// the run is durable (or failed), and nothing waits meanwhile. While the submit is in flight
// the executor counts it as outstanding work, so an io_context::run that Stop ended returns
// only after the store has answered; the store's callback owns everything it touches.
boost::asio::awaitable<Result<store::Submitted>> Submit(store::Store& store, store::NewRun run);

}  // namespace gpuq::api
