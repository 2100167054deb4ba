/*
 * nino.h: the C ABI of nino (neural-network nowcasting), for C and C++ training runtimes.
 *
 * Link with libnino.a (built by `cargo build --release --manifest-path nino-core/capi/Cargo.toml`). The library
 * allocates nothing and keeps no global state: a nowcaster lives in one block of caller memory whose size
 * nino_plan_query() states up front, a schedule in a nino_schedule the caller owns. Every function returns
 * NINO_OK (0) or a negative NINO_E_* code; nino_error_name() and nino_error_message() name them. No pointer
 * the library keeps refers to anything but the caller's nowcaster block and the library's own static data.
 * Thread safety: a nowcaster or schedule must not be used by two threads at once; distinct ones, and every
 * other function, may be called from any thread. See docs/c-abi.md.
 *
 * This header is hand-written; tests/capi_header.rs checks every prototype, struct layout and constant
 * against the Rust definitions (nino-core/src/capi/), so the two cannot drift apart.
 */
#ifndef NINO_H
#define NINO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the ABI this header declares; compare with nino_abi_version(). */
#define NINO_ABI_VERSION 1

/* Status codes. */
#define NINO_OK 0
#define NINO_E_NULL (-1)             /* a pointer argument that must not be null is null */
#define NINO_E_ALIGN (-2)            /* a pointer is not aligned for its type (NINO_ALIGN for nowcaster memory) */
#define NINO_E_BUFFER_SIZE (-3)      /* a buffer's length is not the one the memory plan asks for */
#define NINO_E_OVERLAP (-4)          /* two buffers that must be distinct overlap */
#define NINO_E_ARCH (-5)             /* the architecture string or input shape is invalid */
#define NINO_E_WEIGHTS (-6)          /* the weight file is malformed or lacks a tensor the model reads */
#define NINO_E_MODEL_ARGS (-7)       /* model_args is missing, malformed or names an unsupported option */
#define NINO_E_UNSUPPORTED (-8)      /* a model the ABI does not run, or that cannot nowcast this arch */
#define NINO_E_NODE_FEATURES (-9)    /* no node features given and no built-in table for this arch */
#define NINO_E_HORIZON (-10)         /* the horizon k is outside 1..=seq_len */
#define NINO_E_HISTORY (-11)         /* fewer than ctx states recorded */
#define NINO_E_NON_FINITE (-12)      /* a value that must be finite is NaN or infinite */
#define NINO_E_INVALID_ARGUMENT (-13) /* an argument is out of its range */
#define NINO_E_NO_SNAPSHOT (-14)     /* restore before any save */
#define NINO_E_HANDLE (-15)          /* the nowcaster or schedule was not initialised by its _init function */

/* The nowcaster's memory block. */
#define NINO_ALIGN 16                /* alignment the block must have */
#define NINO_STORAGE_F32 0           /* weights stored as f32 (exact) */
#define NINO_STORAGE_F16 1           /* weights stored as f16 (half the memory; the math stays f32) */
#define NINO_MAX_ARCH_SPEC 256       /* longest architecture string, bytes before its NUL */
#define NINO_MAX_MODEL_ARGS 1024     /* longest model_args JSON, bytes before its NUL */

/* Schedules. */
#define NINO_SCHEDULE_WORDS 32       /* words of a nino_schedule */
#define NINO_PERIOD_STATIC 0         /* every window lasts `first` steps (the reference) */
#define NINO_PERIOD_GEOMETRIC 1      /* first * growth^j, capped at max */
#define NINO_PERIOD_PROGRESS 2       /* geometric, capped at cap while the reported loss falls, up to max */
#define NINO_PERIOD_DYNAMIC 3        /* nino's default dynamic rule (other fields ignored) */
#define NINO_PERIOD_FORK 4           /* the public dynamic_period fork's periods (other fields ignored) */
#define NINO_HORIZON_DEFAULT 0       /* counter for a static period, fraction otherwise */
#define NINO_HORIZON_COUNTER 1       /* the reference: the horizon schedule indexed by the nowcast counter */
#define NINO_HORIZON_FRACTION 2      /* the reference curve read at the training fraction step / max_steps */
#define NINO_ACTION_ADAM 0           /* an ordinary optimizer step */
#define NINO_ACTION_RECORD 1         /* record the parameters (nino_nowcaster_record), then an optimizer step */
#define NINO_ACTION_NOWCAST 2        /* record the parameters, then nowcast with horizon k instead of a step */
#define NINO_MAX_STEPS 4294967295u   /* largest max_steps of a schedule */

/* Rollback verdicts. */
#define NINO_VERDICT_KEEP 0          /* the nowcast stays */
#define NINO_VERDICT_NON_FINITE 1    /* a parameter or the probe loss is NaN or infinite: undo */
#define NINO_VERDICT_LOSS_ROSE 2     /* the probe loss rose beyond the rule: undo */
#define NINO_VERDICT_WORSE_LATER 3   /* deferred verdict: worse at the next recorded state: undo */
#define NINO_VERDICT_RETIRED 4       /* nowcasting has stopped (not returned by these functions) */

/* What a nowcaster is built from. */
typedef struct nino_model {
    const char *arch;          /* NUL-terminated: "conv:4,6,6", "mlp:32" */
    size_t channels;           /* input channels of one example */
    size_t height;             /* input height */
    size_t width;              /* input width */
    size_t classes;            /* classes (width of the classifier) */
    const uint8_t *weights;    /* the NiNo weight file (safetensors); only read by nino_plan_query and _init */
    size_t weights_len;        /* bytes of weights */
    const char *model_args;    /* NUL-terminated model_args JSON; NULL: read it from the file's metadata */
    int32_t storage;           /* NINO_STORAGE_F32 or NINO_STORAGE_F16 */
} nino_model;

/* The memory plan of one nowcaster. */
typedef struct nino_plan {
    size_t params;             /* parameters P of the target network: the length of every parameter buffer */
    size_t ctx;                /* context states a nowcast reads */
    size_t seq_len;            /* largest horizon k */
    size_t nodes;              /* nodes of the neural graph */
    size_t node_feature_width; /* node feature columns (LPE); 0 when the model reads none */
    size_t state_bytes;        /* the nowcaster's own state */
    size_t weight_bytes;       /* the weights in the chosen storage */
    size_t history_bytes;      /* the context history, ctx * params floats */
    size_t node_feature_bytes; /* the node features, nodes * node_feature_width floats */
    size_t scratch_bytes;      /* scratch of one nowcast */
    size_t rollback_bytes;     /* the rollback snapshot, params floats */
    size_t total_bytes;        /* all of it with padding: the least mem_len of nino_nowcaster_init */
    size_t align;              /* alignment the block must have (NINO_ALIGN) */
} nino_plan;

/* A nowcaster: an opaque handle to the start of its caller-owned memory block. */
typedef struct nino_nowcaster nino_nowcaster;

/* How the period grows from one nowcast to the next. */
typedef struct nino_period {
    int32_t kind;              /* NINO_PERIOD_* */
    size_t first;              /* the first window's period (a static schedule's period), in steps */
    float growth;              /* growth per nowcast (geometric, progress), >= 1 */
    size_t cap;                /* the progress rule's cap while the loss falls */
    size_t max;                /* the largest period (geometric, progress) */
} nino_period;

/* A schedule's state: caller-owned, copyable, opaque. */
typedef struct nino_schedule {
    uint64_t opaque[NINO_SCHEDULE_WORDS];
} nino_schedule;

/* What the training loop does at one step. */
typedef struct nino_action {
    int32_t kind;              /* NINO_ACTION_* */
    size_t index;              /* for a nowcast: its 0-based counter */
    size_t k;                  /* for a nowcast: the horizon for nino_nowcaster_nowcast */
} nino_action;

/* When a nowcast is undone: probe > max_ratio * baseline + max_increase, or anything non-finite. */
typedef struct nino_rule {
    float max_ratio;           /* > 0 */
    float max_increase;        /* >= 0 */
} nino_rule;

/* Adam / AdamW with PyTorch's semantics (weight_decay 0 is Adam). */
typedef struct nino_adam {
    float lr;                  /* learning rate, >= 0 */
    float beta1;               /* in [0, 1); PyTorch: 0.9 */
    float beta2;               /* in [0, 1); PyTorch: 0.999 */
    float eps;                 /* >= 0; PyTorch: 1e-8 */
    float weight_decay;        /* >= 0; decoupled (AdamW) */
} nino_adam;

/* The library's ABI version (NINO_ABI_VERSION of the header it was built with). */
uint32_t nino_abi_version(void);

/* The symbolic name of a code ("NINO_E_HORIZON"), or "NINO_E_UNKNOWN"; a static string. */
const char *nino_error_name(int32_t code);

/* A one-line description of a code; a static string. */
const char *nino_error_message(int32_t code);

/* Fills *plan with the memory plan of a nowcaster for *model (the file's header and model_args are checked,
 * the tensors' values are not). */
int32_t nino_plan_query(const nino_model *model, nino_plan *plan);

/* Builds a nowcaster in mem (mem_len >= plan.total_bytes, aligned to NINO_ALIGN) and stores its handle in
 * *out: packs the weights into it in the model's storage and copies the node features (nodes *
 * node_feature_width floats; NULL: the arch's built-in table, or none for a model that reads none). The
 * weight file and node features may be released afterwards; mem belongs to the nowcaster while it is used. */
int32_t nino_nowcaster_init(const nino_model *model, const float *node_features, size_t node_features_len,
                            void *mem, size_t mem_len, nino_nowcaster **out);

/* Records params (n = plan.params floats) as the newest context state; beyond ctx states the oldest goes. */
int32_t nino_nowcaster_record(nino_nowcaster *nc, const float *params, size_t n);

/* Stores in *count how many context states are held (at most plan.ctx). */
int32_t nino_nowcaster_recorded(nino_nowcaster *nc, size_t *count);

/* Predicts the parameters k context spacings after the newest state into out (n = plan.params floats),
 * written only on success; out may be the live parameters. */
int32_t nino_nowcaster_nowcast(nino_nowcaster *nc, size_t k, float *out, size_t n);

/* Saves params (n = plan.params floats) as the rollback snapshot, replacing any earlier one. */
int32_t nino_nowcaster_save(nino_nowcaster *nc, const float *params, size_t n);

/* Writes the rollback snapshot back into params (n = plan.params floats); the snapshot stays. */
int32_t nino_nowcaster_restore(nino_nowcaster *nc, float *params, size_t n);

/* Judges a nowcast right after it landed: probe is the loss at the new params (n floats), baseline the loss
 * before; rule NULL is the default (ratio 10, slack 0.1). Stores a NINO_VERDICT_* in *verdict. */
int32_t nino_verdict_judge(const nino_rule *rule, float baseline, float probe, const float *params, size_t n,
                           int32_t *verdict);

/* The deferred verdict: the loss after (at the next recorded state) against before (just before the
 * nowcast, same probe); rule NULL is the deferred default (ratio 1.05, no slack). */
int32_t nino_verdict_judge_later(const nino_rule *rule, float before, float after, int32_t *verdict);

/* 1 when verdict undoes the nowcast, 0 when it keeps it, NINO_E_INVALID_ARGUMENT for no verdict. */
int32_t nino_verdict_rolls_back(int32_t verdict);

/* Starts a schedule for ctx context states, a run of at most max_steps steps and seq_len horizons (the
 * plan's ctx and seq_len); horizon is a NINO_HORIZON_*. */
int32_t nino_schedule_init(nino_schedule *schedule, const nino_period *period_spec, int32_t horizon, size_t ctx,
                           size_t max_steps, size_t seq_len);

/* Stores in *action what the loop does at 1-based step `step`; call once per step, in order. */
int32_t nino_schedule_next(nino_schedule *schedule, uint64_t step, nino_action *action);

/* Reports the held-out loss at the nowcast just made (the progress rule reads it; others ignore it). */
int32_t nino_schedule_report(nino_schedule *schedule, float loss);

/* One Adam step in place over n parameters; params, grad, m, v (zeros at first) are distinct buffers and *t
 * is the step counter (0 at first), incremented first as PyTorch does. */
int32_t nino_adam_step(const nino_adam *adam, float *params, const float *grad, float *m, float *v, size_t n,
                       uint64_t *t);

#ifdef __cplusplus
}
#endif

#endif /* NINO_H */
