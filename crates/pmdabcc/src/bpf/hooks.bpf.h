/* Program definitions shared by the modules' BPF programs and by user modules: one body for
 * the programs of several hooks. Include after vmlinux.h and <bpf/bpf_helpers.h>. */
#ifndef BCC_PMDA_HOOKS_BPF_H
#define BCC_PMDA_HOOKS_BPF_H

/* Defines the tp_btf and raw_tp hook twins of tracepoint `tp` (MODULE-SPEC.md): `base`_btf on
 * tp_btf/`tp` and `base`_raw on raw_tp/`tp`, both returning `handler`(ctx). Both kinds give
 * the tracepoint's arguments as ctx[0], ctx[1], ... (tp_btf also types them for the
 * verifier), so the handler, an `int (unsigned long long *ctx)`, serves both. */
#define BTF_RAW_TWINS(tp, base, handler)			\
	SEC("tp_btf/" #tp)					\
	int base##_btf(unsigned long long *ctx)			\
	{							\
		return handler(ctx);				\
	}							\
	SEC("raw_tp/" #tp)					\
	int base##_raw(unsigned long long *ctx)			\
	{							\
		return handler(ctx);				\
	}

/* Defines program `prog` on the classic tracepoint `category`/`event`, returning
 * `handler`(ctx) for its record (a `record_type` *): one handler for several tracepoints. */
#define TRACEPOINT_PROGRAM(category, event, prog, record_type, handler)	\
	SEC("tracepoint/" #category "/" #event)				\
	int prog(record_type *ctx)						\
	{									\
		return handler(ctx);						\
	}

/* Defines the two programs of system call `call` for a module that keeps a call's arguments
 * from its entry to its exit (PENDING_CALL_MAP): `prog`_enter_`call` on
 * syscalls:sys_enter_`call` returns `on_enter`, an expression of `ctx` (the
 * struct trace_event_raw_sys_enter *, arguments in ctx->args[0..5]), and `prog`_exit_`call`
 * on sys_exit_`call` returns `on_exit`(ctx->ret). */
#define SYSCALL_PROGRAMS(prog, call, on_enter, on_exit)			\
	SEC("tracepoint/syscalls/sys_enter_" #call)				\
	int prog##_enter_##call(struct trace_event_raw_sys_enter *ctx)		\
	{									\
		return on_enter;						\
	}									\
	SEC("tracepoint/syscalls/sys_exit_" #call)				\
	int prog##_exit_##call(struct trace_event_raw_sys_exit *ctx)		\
	{									\
		return on_exit(ctx->ret);					\
	}

#endif
