// CRC-32C (Castagnoli) for HRL records: the SSE4.2 crc32 instruction where the CPU has it
// (several GB/s, 4x zlib's CRC-32 here), a table otherwise. Same result either way.
#ifndef REPLICAFS_CRC32C_H
#define REPLICAFS_CRC32C_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

static inline uint32_t rfs_crc32c_sw(uint32_t crc, const uint8_t *p, size_t n) {
    static uint32_t table[256];
    static int ready = 0;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            table[i] = c;
        }
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    crc = ~crc;
    while (n--) crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static inline uint32_t rfs_crc32c_hw(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c = ~crc;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}

static inline int rfs_have_sse42(void) {
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        unsigned a, b, c, d;
        v = (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2)) ? 1 : 0;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}
#endif

/// CRC-32C of `n` bytes at `p`, continuing from `crc` (0 to start).
static inline uint32_t rfs_crc32c(uint32_t crc, const void *p, size_t n) {
#if defined(__x86_64__)
    if (rfs_have_sse42()) return rfs_crc32c_hw(crc, (const uint8_t *)p, n);
#endif
    return rfs_crc32c_sw(crc, (const uint8_t *)p, n);
}
#endif
