// Allocator for large, long-lived buffers (plan arenas): from 2 MiB up they
// are 2 MiB-aligned and advised to be backed by transparent huge pages before first touch.
// Why: kernels read many rows of a plane at once (a sparse kernel one row per weight column,
// hundreds per tile), each on its own 4 KiB page, and in a virtual machine every TLB miss is a
// two-level page walk; with THP in "madvise" mode (the usual default) nothing else gets huge
// pages. Where the kernel refuses, the buffer simply stays on small pages.
#pragma once
#include <sys/mman.h>

#include <cstddef>
#include <cstdlib>
#include <new>

namespace si {

inline constexpr size_t kHugePageBytes = size_t(2) << 20;

template <class T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) {}

  T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes < kHugePageBytes) return static_cast<T*>(::operator new(bytes));
    const size_t rounded = (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
    void* p = std::aligned_alloc(kHugePageBytes, rounded);
    if (!p) throw std::bad_alloc();
    madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure leaves small pages
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) {
    if (n * sizeof(T) < kHugePageBytes) ::operator delete(p);
    else std::free(p);
  }
  template <class U>
  bool operator==(const HugePageAllocator<U>&) const { return true; }
  template <class U>
  bool operator!=(const HugePageAllocator<U>&) const { return false; }
};

}  // namespace si
