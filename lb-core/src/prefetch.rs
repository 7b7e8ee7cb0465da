//! A software prefetch hint, for batch paths that know addresses before they read them.

/// Asks the CPU to start loading the cache line holding `value` into all cache levels.
///
/// A hint only: it never faults, never changes what any read returns, and compiles to
/// nothing on targets other than x86-64.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: `prefetch` reads nothing and cannot fault (an invalid address is ignored by
        // the CPU); the pointer comes from a live reference anyway. SSE, which it needs, is part
        // of the x86-64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
