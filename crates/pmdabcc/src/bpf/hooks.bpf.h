/* Program definitions shared by the modules' BPF programs and by user modules: one body for
 * the programs of several hooks. Include after vmlinux.h and <bpf/bpf_helpers.h>. */
#ifndef BCC_PMDA_HOOKS_BPF_H
#define BCC_PMDA_HOOKS_BPF_H

/* Defines program `prog` on tp_btf/`tp` (or on raw_tp/`tp`), returning `handler`(ctx): one
 * handler for several tracepoints. Both kinds give the tracepoint's arguments as ctx[0],
 * ctx[1], ... (tp_btf also types them for the verifier), so the handler is an
 * `int (unsigned long long *ctx)` that reads them there. */
#define BTF_PROGRAM(tp, prog, handler)				\
	SEC("tp_btf/" #tp)					\
	int prog(unsigned long long *ctx)			\
	{							\
		return handler(ctx);				\
	}
#define RAW_TP_PROGRAM(tp, prog, handler)			\
	SEC("raw_tp/" #tp)					\
	int prog(unsigned long long *ctx)			\
	{							\
		return handler(ctx);				\
	}

/* Defines the tp_btf and raw_tp hook twins of tracepoint `tp` (MODULE-SPEC.md): `base`_btf and
 * `base`_raw, one handler for both. */
#define BTF_RAW_TWINS(tp, base, handler)			\
	BTF_PROGRAM(tp, base##_btf, handler)			\
	RAW_TP_PROGRAM(tp, base##_raw, handler)

/* Defines the tp_btf and classic hook twins of tracepoint `category`/`tp` for a handler that
 * reads none of its arguments (what it needs, the current task has): `base`_btf on
 * tp_btf/`tp` and `base`_tp on tracepoint/`category`/`tp`, both running handler(). */
#define BTF_TP_TWINS(category, tp, base, handler)			\
	SEC("tp_btf/" #tp)						\
	int base##_btf(unsigned long long *ctx)			\
	{								\
		handler();						\
		return 0;						\
	}								\
	SEC("tracepoint/" #category "/" #tp)				\
	int base##_tp(void *ctx)					\
	{								\
		handler();						\
		return 0;						\
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
