#pragma once
// RunBlocking: runs a blocking call on a thread pool and resumes the awaiting coroutine on its
// own executor, so io threads keep serving while the call waits (Store::Submit waits for a
// group commit).
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace gpuq::api {

// `fn` is moved to the pool and called there once; its result (or exception) comes back.
// The pool must outlive the call.
template <class F>
boost::asio::awaitable<std::invoke_result_t<F&>> RunBlocking(boost::asio::thread_pool& pool,
                                                              F fn) {
  namespace asio = boost::asio;
  using T = std::invoke_result_t<F&>;
  auto init = [&pool](auto handler, F f) {
    asio::post(pool, [handler = std::move(handler), f = std::move(f)]() mutable {
      std::exception_ptr error;
      std::optional<T> value;
      try {
        value.emplace(f());
      } catch (...) {
        error = std::current_exception();
      }
      auto executor = asio::get_associated_executor(handler);
      asio::post(executor, [handler = std::move(handler), error,
                            value = std::move(value)]() mutable {
        std::move(handler)(error, std::move(value));
      });
    });
  };
  std::optional<T> result =
      co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                    void(std::exception_ptr, std::optional<T>)>(
          std::move(init), asio::use_awaitable, std::move(fn));
  co_return std::move(*result);
}

}  // namespace gpuq::api
