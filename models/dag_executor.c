/* The DAG executor's forward and backward passes for float64 tensors on the CPU, one
 * position at a time: the same formulas, in the same order, as _run, _partials and
 * _Execute.backward in dag_executor.py, which documents them. Torch spends most of the
 * time of those ~200 small calls on dispatch and layout copies; here a position's DAG
 * stays in L1 and the inputs are read in their natural (..., D, 2D) layout.
 *
 * Built and loaded by dag_executor.py with ctypes. Positions are independent, so the
 * result of one never depends on the batch it is in or on the number of threads. */
#include <math.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct {
    double max_value, log_limit, zero_log, tiny;
} Limits;

static double clamp_max(double x, double hi) { return x > hi ? hi : x; }  /* keeps NaN */

static double safe_log(double mag, const Limits *c) { return mag > c->tiny ? log(mag) : c->zero_log; }

/* One position's forward pass. X holds the signed value, log-magnitude and is-negative
 * rows of all 2D nodes (3 * 2D); tape, when not NULL, gets per step what backward needs:
 * the linear, log and neg sums, the value before clamping, exp(clamped log sum) and
 * cos(pi * neg sum) (6 * D). */
static double forward_one(int D, const double *vmag, const double *vsign, const double *O,
                          const double *G, double *X, double *tape, const Limits *c) {
    double *x0 = X, *x1 = X + 2 * D, *x2 = X + 4 * D;
    for (int i = 0; i < D; i++) {
        double mag = clamp_max(fabs(vmag[i]), c->max_value);
        x0[i] = vsign[i] * mag;
        x1[i] = safe_log(mag, c);
        x2[i] = (1.0 - vsign[i]) * 0.5;
    }
    for (int k = 0; k < D; k++) {
        int n = D + k;
        const double *o = O + k * 2 * D;
        double linear = o[0] * x0[0], log_sum = o[0] * x1[0], neg_sum = o[0] * x2[0];
        for (int j = 1; j < n; j++) {
            linear += o[j] * x0[j];
            log_sum += o[j] * x1[j];
            neg_sum += o[j] * x2[j];
        }
        double g = G[k];
        double log_c = clamp_max(log_sum, c->log_limit);
        double magnitude = exp(log_c), cosine = cos(M_PI * neg_sum);
        double raw = g * linear + (1.0 - g) * (cosine * magnitude);
        double value = raw < -c->max_value ? -c->max_value : clamp_max(raw, c->max_value);
        x0[n] = value;
        x1[n] = g == 0.0 ? log_c : safe_log(fabs(value), c);
        x2[n] = value < 0.0;
        if (tape) {
            double *t = tape + 6 * k;
            t[0] = linear; t[1] = log_sum; t[2] = neg_sum; t[3] = raw; t[4] = magnitude; t[5] = cosine;
        }
    }
    return x0[2 * D - 1];
}

/* Forward over n_pos positions: out (n_pos), and X (n_pos, 3 * 2D) and tape
 * (n_pos, 6 * D) for backward when they are not NULL. */
int dag_forward(long n_pos, int D, const double *vmag, const double *vsign, const double *O,
                const double *G, double *out, double *X, double *tape, int threads,
                double max_value, double log_limit, double zero_log, double tiny) {
    if (D < 1 || D > MAX_DEPTH) return 1;
    Limits c = {max_value, log_limit, zero_log, tiny};
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (long p = 0; p < n_pos; p++) {
        double scratch[6 * MAX_DEPTH];
        double *x = X ? X + p * 6 * D : scratch;
        out[p] = forward_one(D, vmag + p * 2 * D, vsign + p * 2 * D, O + p * 2 * D * D, G + p * D,
                             x, tape ? tape + p * 6 * D : NULL, &c);
    }
    return 0;
}

/* Backward over n_pos positions from forward's X and tape: the gradients of the four
 * inputs (same shapes as the inputs; entries that are never read get 0). */
int dag_backward(long n_pos, int D, const double *vmag, const double *vsign, const double *O,
                 const double *G, const double *X, const double *tape, const double *grad_out,
                 double *d_vmag, double *d_vsign, double *dO, double *dG, int threads,
                 double max_value, double log_limit, double zero_log, double tiny) {
    if (D < 1 || D > MAX_DEPTH) return 1;
    Limits c = {max_value, log_limit, zero_log, tiny};
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (long p = 0; p < n_pos; p++) {
        const double *x = X + p * 6 * D, *t0 = tape + p * 6 * D, *o0 = O + p * 2 * D * D, *g = G + p * D;
        const double *x0 = x, *x1 = x + 2 * D, *x2 = x + 4 * D;
        double dX[6 * MAX_DEPTH];  /* gradient of every node's three rows */
        double *d0 = dX, *d1 = dX + 2 * D, *d2 = dX + 4 * D;
        memset(dX, 0, sizeof(double) * 6 * D);
        d0[2 * D - 1] = grad_out[p];
        double *do_p = dO + p * 2 * D * D;
        for (int k = D - 1; k >= 0; k--) {
            int n = D + k;
            const double *t = t0 + 6 * k, *o = o0 + k * 2 * D;
            double linear = t[0], log_sum = t[1], neg_sum = t[2], raw = t[3], magnitude = t[4];
            double product = t[5] * magnitude, value = x0[n];
            double inside = value == raw, log_inside = log_sum <= c.log_limit;
            int pure_log = g[k] == 0.0;
            double p0 = inside * g[k];
            double d_value_d_product = inside - p0;
            double p1 = d_value_d_product * product * log_inside;
            double p2 = d_value_d_product * sin(M_PI * neg_sum) * (magnitude * -M_PI);
            double p4 = !pure_log && fabs(value) > c.tiny ? 1.0 / value : 0.0;
            double p5 = pure_log && log_inside;
            double d_value = d0[n] + d1[n] * p4;
            double d_linear = d_value * p0, d_log = d_value * p1 + d1[n] * p5, d_neg = d_value * p2;
            dG[p * D + k] = d_value * (inside * (linear - product));
            double *do_k = do_p + k * 2 * D;
            for (int j = 0; j < n; j++) {
                do_k[j] = x0[j] * d_linear + x1[j] * d_log + x2[j] * d_neg;
                d0[j] += d_linear * o[j];
                d1[j] += d_log * o[j];
                d2[j] += d_neg * o[j];
            }
            for (int j = n; j < 2 * D; j++) do_k[j] = 0.0;  /* future nodes are never read */
        }
        /* input nodes: v = sign * mag, L = safe_log(mag), neg = (1 - sign) / 2, and
         * mag = clamp(|V_mag|, max=MAX_VALUE) */
        const double *v = vmag + p * 2 * D, *s = vsign + p * 2 * D;
        double *dm = d_vmag + p * 2 * D, *ds = d_vsign + p * 2 * D;
        for (int i = 0; i < D; i++) {
            double a = fabs(v[i]), mag = clamp_max(a, c.max_value);
            double d_mag = d0[i] * s[i] + (mag > c.tiny ? d1[i] / mag : 0.0);
            double sgn = (v[i] > 0.0) - (v[i] < 0.0);
            dm[i] = d_mag * sgn * (a <= c.max_value);
            ds[i] = d0[i] * mag - d2[i] / 2.0;
            dm[D + i] = 0.0;
            ds[D + i] = 0.0;
        }
    }
    return 0;
}
