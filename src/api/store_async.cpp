#include "api/store_async.hpp"

#include <memory>
#include <optional>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace gpuq::api {
namespace {

namespace asio = boost::asio;

using Signature = void(Result<store::Submitted>);

// What one in-flight submit holds: the coroutine's completion handler and a tracked copy of
// its executor (outstanding work: that io_context keeps running until the answer is posted).
template <class Handler>
struct SubmitOp {
  Handler handler;
  asio::any_io_executor work;
};

}  // namespace

asio::awaitable<Result<store::Submitted>> Submit(store::Store& store, store::NewRun run) {
  auto init = [&store](auto handler, store::NewRun run) {
    using Handler = decltype(handler);
    auto executor = asio::get_associated_executor(handler);
    auto work = asio::any_io_executor(
        asio::prefer(executor, asio::execution::outstanding_work.tracked));
    // A shared_ptr because Store::SubmitCallback is a std::function, which must be copyable
    // while the handler is move-only: the copies of the callback co-own the op.
    auto op = std::make_shared<SubmitOp<Handler>>(SubmitOp<Handler>{std::move(handler),
                                                                     std::move(work)});
    store.SubmitAsync(std::move(run), [op](Result<store::Submitted> result) {
      // Posted, never run inline: the store may call this on an io thread inside SubmitAsync,
      // or on its writer thread; the coroutine resumes on its own executor either way.
      asio::any_io_executor work = std::move(op->work);
      asio::post(work, [handler = std::move(op->handler), result = std::move(result)]() mutable {
        std::move(handler)(std::move(result));
      });
      // `work` ends here, after the post: the io_context never runs out of work in between,
      // and nothing of the server is touched after this.
    });
  };
  co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&, Signature>(
      std::move(init), asio::use_awaitable, std::move(run));
}

}  // namespace gpuq::api
