/* CO-RE relocations for tests/test_btf.py: no libbpf headers. */
#define SEC(name) __attribute__((section(name), used))

struct task {
	int pid;
	int tgid;
	unsigned int flags : 4;
	struct task *parent;
} __attribute__((preserve_access_index));

enum state { RUNNING = 0, SLEEPING = 1 };

SEC("kprobe/do_exit")
int core_prog(struct task *t)
{
	int pid = __builtin_preserve_access_index(t->pid);
	int ppid = __builtin_preserve_access_index(t->parent->tgid);
	int has = __builtin_preserve_field_info(t->tgid, 2 /* FIELD_EXISTS */);
	int sz = __builtin_preserve_field_info(t->pid, 1 /* FIELD_BYTE_SIZE */);
	int tsz = __builtin_preserve_type_info(*t, 1 /* TYPE_SIZE */);
	long eval = __builtin_preserve_enum_value(*(enum state *)SLEEPING, 0 /* ENUMVAL_EXISTS */);
	unsigned long long lid = __builtin_btf_type_id(*t, 0 /* TYPE_ID_LOCAL */);
	return pid + ppid + has + sz + tsz + (int)eval + (int)lid;
}

char _license[] SEC("license") = "GPL";
