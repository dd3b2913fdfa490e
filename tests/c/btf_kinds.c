/* Exercises every BTF kind clang emits; compiled by tests/test_btf.py. No libbpf headers. */
#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define BPF_MAP_TYPE_HASH 1
#define __tag(x) __attribute__((btf_decl_tag(x)))
#define __ptag(x) __attribute__((btf_type_tag(x)))

typedef unsigned int u32;
typedef unsigned long long u64;
typedef signed char s8;
typedef _Bool flag_t;

struct opaque; /* fwd (struct) */
union opaque_u; /* fwd (union) */

enum colour { RED, GREEN = 5, BLUE = -3 };
enum big { SMALL = 1, HUGE = 0x1234567890ULL };
enum sbig { NEG = -5000000000LL, POS = 7 };
enum high { LOW = 1, HIGH = 0x80000000u }; /* unsigned 32-bit, top bit set */

struct bits {
	u32 a : 3;
	u32 b : 13;
	int c : 7;
	unsigned char d;
	u64 e __tag("member_tag");
};

union num {
	int i;
	float f;
	double d;
	long double ld;
};

struct node {
	struct node *next;
	const volatile int *cv;
	int *restrict r;
	int __ptag("user") *tagged;
	struct opaque *op;
	union opaque_u *opu;
	char name[16];
	int grid[2][3];
	enum colour col;
	enum big bg;
	enum sbig sb;
	union num n;
	struct bits bf;
	flag_t flag;
	s8 small;
	void (*cb)(int, long);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__type(key, u32);
	__type(value, struct node);
} m SEC(".maps");

int counter = 7;             /* .data */
enum high high_val = HIGH;   /* .data */
const volatile int limit = 3; /* .rodata */
static u64 hits;              /* .bss */
char _license[] SEC("license") = "GPL";

static __attribute__((noinline)) int helper(struct node *n __tag("param_tag"), int k)
{
	if (!n)
		return -1;
	return n->col + k + (int)n->bf.b;
}

__attribute__((noinline)) __tag("func_tag") int global_fn(int x, float *y)
{
	return x * 2 + (y ? 1 : 0);
}

SEC("xdp")
int prog_xdp(void *ctx)
{
	struct node n = {};
	n.col = BLUE;
	hits++;
	counter += limit;
	return helper(&n, counter) + global_fn(counter, 0);
}

SEC("tc")
int prog_tc(void *ctx)
{
	hits += 2;
	return global_fn((int)hits, 0);
}

extern int CONFIG_EXAMPLE __attribute__((section(".kconfig"), weak));
extern int ext_func(int x) __attribute__((section(".ksyms")));

SEC("tp/syscalls/sys_enter_write")
int prog_ext(void *ctx)
{
	return CONFIG_EXAMPLE + ext_func(3);
}
