/* Instruction-spread program for tests/test_isa.py: compiled at -mcpu=v1..v4, both endians.
 * Every result goes to a volatile sink so that the compiler keeps each operation. */
typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;
typedef long long s64;
typedef int s32;
typedef short s16;
typedef signed char s8;

static long (*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_trace_printk)(const char *fmt, u32 size, ...) = (void *)6;
static u64 (*bpf_ktime_get_ns)(void) = (void *)5;

volatile u64 sink64[64];
volatile u32 sink32[64];
volatile s64 ssink64[16];
volatile s32 ssink32[16];
volatile s8 src_s8;
volatile s16 src_s16;
volatile s32 src_s32;
u64 counter64;
u32 counter32;
char mymap[8];
int (*callback)(int);

static __attribute__((noinline)) int mul_add(int a, int b)
{
	return a * b + (int)counter32;
}

static __attribute__((noinline)) u64 mix(u64 a, u64 b)
{
	return (a ^ (b >> 7)) * 0x9e3779b97f4a7c15ULL;
}

__attribute__((section("xdp"), used)) int spread(u32 *ctx)
{
	u64 a = ((u64)ctx[0] << 32) | ctx[1], b = ctx[2] | 1;
	u32 x = ctx[3], y = ctx[4] | 1;
	s64 sa = (s64)a, sb = (s64)(b | 3);
	s32 sx = (s32)x, sy = (s32)(y | 5);
	int i;

	sink64[0] = a + b; sink64[1] = a - b; sink64[2] = a * b; sink64[3] = a / b;
	sink64[4] = a % b; sink64[5] = a & b; sink64[6] = a | b; sink64[7] = a ^ b;
	sink64[8] = a << (b & 63); sink64[9] = a >> (b & 63); sink64[10] = -a;
	sink64[11] = a + 12345; sink64[12] = a * 77; sink64[13] = a / 10; sink64[14] = a % 10;
	sink64[15] = a << 13; sink64[16] = a >> 17; sink64[17] = a & 0xff00; sink64[18] = a | 0x40;
	sink64[19] = a ^ -1; sink64[20] = a - 0x7fffffff;
	ssink64[2] = sa >> (b & 63); ssink64[3] = sa >> 9;
	sink32[0] = x + y; sink32[1] = x - y; sink32[2] = x * y; sink32[3] = x / y;
	sink32[4] = x % y; sink32[5] = x & y; sink32[6] = x | y; sink32[7] = x ^ y;
	sink32[8] = x << (y & 31); sink32[9] = x >> (y & 31); sink32[10] = -x;
	sink32[11] = x + 7; sink32[12] = x * 3; sink32[13] = x / 6; sink32[14] = x % 6;
	sink32[15] = x << 5; sink32[16] = x >> 3; sink32[17] = x & 0xf0; sink32[18] = x | 2;
	ssink32[2] = sx >> (y & 31); ssink32[3] = sx >> 4; ssink32[8] = sx + sy;
#if __BPF_CPU_VERSION__ >= 4
	/* signed division and modulo exist from cpu v4 on */
	ssink64[0] = sa / sb; ssink64[1] = sa % sb; ssink64[4] = sa / -7; ssink64[5] = sa % 13;
	ssink32[0] = sx / sy; ssink32[1] = sx % sy; ssink32[4] = sx / -3; ssink32[5] = sx % 9;
#endif

	/* byte swaps */
	sink32[20] = __builtin_bswap16((u16)x);
	sink32[21] = __builtin_bswap32(x);
	sink64[21] = __builtin_bswap64(a);

	/* sign extension: movsx / ldsx on v4, shifts before */
	ssink64[6] = (s8)a; ssink64[7] = (s16)a; ssink64[8] = (s32)a;
	ssink32[6] = (s8)x; ssink32[7] = (s16)x;
	ssink64[9] = src_s8; ssink64[10] = src_s16; ssink64[11] = src_s32;

	/* 64-bit constants (ld_imm64) */
	sink64[22] = a * 0x0123456789abcdefULL;
	sink64[23] = b + 0xffffffff00000000ULL;
	sink64[24] = 0x8000000000000000ULL;

	/* atomics */
	__sync_fetch_and_add(&counter64, a);
#if __BPF_CPU_VERSION__ >= 3
	__sync_fetch_and_add(&counter32, x);
	sink64[25] = __sync_fetch_and_add(&counter64, b);
	sink32[22] = __sync_fetch_and_add(&counter32, y);
	__sync_fetch_and_or(&counter64, a);
	__sync_fetch_and_and(&counter64, b);
	__sync_fetch_and_xor(&counter64, a);
	__sync_fetch_and_or(&counter32, x);
	__sync_fetch_and_and(&counter32, y);
	__sync_fetch_and_xor(&counter32, x);
	sink64[26] = __sync_fetch_and_or(&counter64, b);
	sink64[27] = __sync_fetch_and_and(&counter64, a);
	sink64[28] = __sync_fetch_and_xor(&counter64, b);
	sink32[23] = __sync_fetch_and_or(&counter32, y);
	sink32[24] = __sync_fetch_and_and(&counter32, x);
	sink32[25] = __sync_fetch_and_xor(&counter32, y);
	sink64[29] = __atomic_exchange_n(&counter64, a, __ATOMIC_SEQ_CST);
	sink32[26] = __atomic_exchange_n(&counter32, x, __ATOMIC_SEQ_CST);
	sink64[30] = __sync_val_compare_and_swap(&counter64, a, b);
	sink32[27] = __sync_val_compare_and_swap(&counter32, x, y);
#endif

	/* bounded loop and comparisons of every kind */
	for (i = 0; i < 8; i++) {
		if (ctx[i] > 100)
			sink32[30] += i;
		else if ((s32)ctx[i] < -5)
			sink32[31] -= 1;
		if ((s64)ctx[i + 1] >= sb)
			sink32[32] ^= 1;
		if (ctx[i] & 0x80)
			sink32[33] |= 4;
	}
	if (a > b) sink32[34] = 1;
	if (a >= b) sink32[35] = 1;
	if (a < b) sink32[36] = 1;
	if (a <= b) sink32[37] = 1;
	if (sa > sb) sink32[38] = 1;
	if (sa >= sb) sink32[39] = 1;
	if (sa < sb) sink32[40] = 1;
	if (sa <= sb) sink32[41] = 1;
	if (a == 99) sink32[42] = 1;
	if (a != b) sink32[43] = 1;
	if (sx < -100) sink32[44] = 1;
	if (x <= 1000) sink32[45] = 1;

	switch (x & 15) {
	case 1: sink32[46] = 10; break;
	case 2: sink32[46] = 20; break;
	case 3: sink32[46] = 30; break;
	case 5: sink32[46] = 50; break;
	case 8: sink32[46] = 80; break;
	case 13: sink32[46] = 130; break;
	default: sink32[46] = 1;
	}

	/* helper calls, BPF-to-BPF calls, indirect call */
	{
		int key = 0;
		u32 *value = (u32 *)bpf_map_lookup_elem(&mymap, &key);

		if (value)
			*value += 1;
	}
	sink64[31] = bpf_ktime_get_ns();
	sink32[47] = mul_add(x, y);
	sink64[32] = mix(a, b);
	sink32[48] = callback(x);
	if (x > 1000)
		bpf_trace_printk("x=%u\n", 6, x);
	return sink32[0] & 3;
}
