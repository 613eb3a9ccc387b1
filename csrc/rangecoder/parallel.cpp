// A minimal fork-join loop over independent streams.
#include <atomic>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>

#include "rans.h"

namespace fastcodec {

void parallel_for(int64_t jobs, int threads, const std::function<void(int64_t)>& job) {
    if (threads < 1) threads = 1;
    if (threads > jobs) threads = static_cast<int>(jobs);
    if (threads <= 1) {
        for (int64_t j = 0; j < jobs; ++j) job(j);  // stops at the first (lowest) failure
        return;
    }
    std::atomic<int64_t> next{0};
    std::exception_ptr error;
    int64_t error_job = jobs;  // the lowest failing job wins, so errors do not depend on timing
    std::mutex error_mutex;
    auto worker = [&] {
        for (int64_t j = next++; j < jobs; j = next++) {
            try {
                job(j);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (j < error_job) {
                    error_job = j;
                    error = std::current_exception();
                }
            }
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(threads - 1));
    for (int t = 1; t < threads; ++t) {
        try {
            pool.emplace_back(worker);
        } catch (const std::system_error&) {
            break;  // out of threads (ulimit, cgroup pids, memory): the ones we have do the work
        }
    }
    worker();
    for (auto& th : pool) th.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace fastcodec
