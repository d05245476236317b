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
// Shifting a CRC over runs of zero bytes (Mark Adler's crc32c.c): lets three independent
// crc32 streams over adjacent blocks run at once and be combined afterwards. The crc32
// instruction has a latency of 3 cycles and a throughput of 1, so one stream uses a third
// of what the CPU can do.
#define RFS_CRC32C_LONG 8192
#define RFS_CRC32C_SHORT 256

static inline uint32_t rfs_gf2_matrix_times(const uint32_t *mat, uint32_t vec) {
    uint32_t sum = 0;
    while (vec) {
        if (vec & 1) sum ^= *mat;
        vec >>= 1;
        mat++;
    }
    return sum;
}

static inline void rfs_gf2_matrix_square(uint32_t *square, const uint32_t *mat) {
    for (int n = 0; n < 32; n++) square[n] = rfs_gf2_matrix_times(mat, mat[n]);
}

/// The operator that appends `len` zero bytes (a power of two) to a CRC.
static inline void rfs_crc32c_zeros_op(uint32_t *even, size_t len) {
    uint32_t odd[32];
    odd[0] = 0x82F63B78u;
    uint32_t row = 1;
    for (int n = 1; n < 32; n++) {
        odd[n] = row;
        row <<= 1;
    }
    rfs_gf2_matrix_square(even, odd); // 2 zero bits
    rfs_gf2_matrix_square(odd, even); // 4 zero bits
    do {
        rfs_gf2_matrix_square(even, odd);
        len >>= 1;
        if (len == 0) return;
        rfs_gf2_matrix_square(odd, even);
        len >>= 1;
    } while (len);
    for (int n = 0; n < 32; n++) even[n] = odd[n];
}

static inline void rfs_crc32c_zeros(uint32_t zeros[][256], size_t len) {
    uint32_t op[32];
    rfs_crc32c_zeros_op(op, len);
    for (uint32_t n = 0; n < 256; n++) {
        zeros[0][n] = rfs_gf2_matrix_times(op, n);
        zeros[1][n] = rfs_gf2_matrix_times(op, n << 8);
        zeros[2][n] = rfs_gf2_matrix_times(op, n << 16);
        zeros[3][n] = rfs_gf2_matrix_times(op, n << 24);
    }
}

static inline uint32_t rfs_crc32c_shift(uint32_t zeros[][256], uint32_t crc) {
    return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^ zeros[2][(crc >> 16) & 0xff] ^ zeros[3][crc >> 24];
}

/// Consumes whole stripes of 3 x `len` bytes: three interleaved CRC streams (the crc32
/// instruction's latency hidden), combined by shifting with the `zeros` tables for `len`.
__attribute__((target("sse4.2")))
static inline uint64_t rfs_crc32c_3way(uint64_t c0, const uint8_t **pp, size_t *np, size_t len,
                                       uint32_t zeros[][256]) {
    const uint8_t *p = *pp;
    size_t n = *np;
    while (n >= 3 * len) {
        uint64_t c1 = 0, c2 = 0;
        const uint8_t *end = p + len;
        do {
            uint64_t a, b, d;
            memcpy(&a, p, 8);
            memcpy(&b, p + len, 8);
            memcpy(&d, p + 2 * len, 8);
            c0 = __builtin_ia32_crc32di(c0, a);
            c1 = __builtin_ia32_crc32di(c1, b);
            c2 = __builtin_ia32_crc32di(c2, d);
            p += 8;
        } while (p < end);
        c0 = rfs_crc32c_shift(zeros, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = rfs_crc32c_shift(zeros, (uint32_t)c0) ^ (uint32_t)c2;
        p += 2 * len;
        n -= 3 * len;
    }
    *pp = p;
    *np = n;
    return c0;
}

__attribute__((target("sse4.2")))
static inline uint32_t rfs_crc32c_hw(uint32_t crc, const uint8_t *p, size_t n) {
    static uint32_t long_zeros[4][256];
    static uint32_t short_zeros[4][256];
    static int ready = 0;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        // Racing first callers compute the same tables; the release store publishes them.
        rfs_crc32c_zeros(long_zeros, RFS_CRC32C_LONG);
        rfs_crc32c_zeros(short_zeros, RFS_CRC32C_SHORT);
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    uint64_t c0 = (uint32_t)~crc;
    c0 = rfs_crc32c_3way(c0, &p, &n, RFS_CRC32C_LONG, long_zeros);
    c0 = rfs_crc32c_3way(c0, &p, &n, RFS_CRC32C_SHORT, short_zeros);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c0 = __builtin_ia32_crc32di(c0, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c0;
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
