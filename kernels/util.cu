/*
 * Small utility kernels.
 *
 * qt_spin_ns: one thread waits `ns` nanoseconds of %globaltimer, then exits. Launch <<<1, 1>>>.
 * Benchmarks queue it before a timed sequence so that the GPU never waits for the host's
 * launches inside the timed region (METHOD.md: time the GPU, not the launch path).
 */
extern "C" __global__ void qt_spin_ns(unsigned long long ns) {
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
        __nanosleep(1000);
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (now - start < ns);
}
