// coproc/detail/pull_iterator.hpp — the input iterator of a range that
// pulls one value at a time (receive_remaining, map_unordered). Internal.
#pragma once

#include <cstddef>
#include <iterator>

namespace coproc::detail {

/// Range keeps the current value in `std::optional<Value> current_`
/// (empty: the range has ended) and makes the next one current in
/// advance(), which may block and throw; it befriends this iterator.
/// Single pass; the range must outlive its iterators.
template <class Range, class Value>
class PullIterator {
public:
    using value_type = Value;
    using difference_type = std::ptrdiff_t;
    using iterator_concept = std::input_iterator_tag;

    PullIterator() = default;
    explicit PullIterator(Range* range) noexcept : range_(range) {}
    Value& operator*() const { return *range_->current_; }
    Value* operator->() const { return &*range_->current_; }
    /// The range's advance(): blocks for the next value (or ends the range).
    PullIterator& operator++() {
        range_->advance();
        return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const PullIterator& it, std::default_sentinel_t) noexcept { return it.at_end(); }

private:
    // A member, so the range's friendship covers its current_.
    [[nodiscard]] bool at_end() const noexcept { return range_ == nullptr || !range_->current_.has_value(); }
    Range* range_ = nullptr;
};

}  // namespace coproc::detail
