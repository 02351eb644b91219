/* A C implementation of an exported FPGA network written against network.h alone (no JSON):
 * reads the input from stdin (LSG_INPUT_NEURONS integers, or LSG_TIMESTEPS frames of them for
 * event frames, C,H,W row-major), runs LSG_TIMESTEPS steps and prints, per step and node,
 * "t <step> <node> " and the hidden node's 0/1 spikes or the readout's membranes, then
 * "class <k>". tests/test_fpga_manifest.py compiles it per header and compares with ==. */
#include <stdio.h>
#include <stdlib.h>
#include "network.h"

static int64_t floor_shift(int64_t x, int s) { /* floor(x / 2^s) without relying on >> of negatives */
    return x >= 0 ? x >> s : ~(~x >> s);
}

static int64_t decay(int64_t v, int code) {
    if (code == LSG_DECAY_NONE) return v;
#if LSG_DECAY_FORM == LSG_DECAY_FORM_MULTIPLY
#if LSG_DECAY_ROUNDING == LSG_ROUND_HALF_UP
    return floor_shift(v * code + ((int64_t)1 << (LSG_DECAY_FRACTION_BITS - 1)), LSG_DECAY_FRACTION_BITS);
#elif LSG_DECAY_ROUNDING == LSG_ROUND_FLOOR
    return floor_shift(v * code, LSG_DECAY_FRACTION_BITS);
#else
#error "this program implements half-up and floor rounding"
#endif
#elif LSG_DECAY_FORM == LSG_DECAY_FORM_SHIFT
    return v - floor_shift(v, code);
#else
#error "unknown LSG_DECAY_FORM"
#endif
}

static void edge_add(const lsg_edge_t *e, const int64_t *in, int64_t *acc) {
    for (int o = 0; o < e->out_c; o++)
        for (int y = 0; y < e->out_h; y++)
            for (int x = 0; x < e->out_w; x++) {
                int64_t sum = 0;
                for (int c = 0; c < e->in_c; c++)
                    for (int i = 0; i < e->kh; i++)
                        for (int j = 0; j < e->kw; j++) {
                            int h = y * e->stride_h + i - e->pad_h, w = x * e->stride_w + j - e->pad_w;
                            if (h < 0 || h >= e->in_h || w < 0 || w >= e->in_w) continue; /* zero padding */
                            sum += (int64_t)e->weight[((o * e->in_c + c) * e->kh + i) * e->kw + j]
                                   * in[(c * e->in_h + h) * e->in_w + w];
                        }
                acc[(o * e->out_h + y) * e->out_w + x] += sum;
            }
}

int main(void) {
    const int frames = LSG_INPUT_ENCODING == LSG_ENCODING_EVENT_FRAMES ? LSG_TIMESTEPS : 1;
    int64_t *input = malloc(sizeof(int64_t) * LSG_INPUT_NEURONS * frames);
    int64_t *v[LSG_NODE_COUNT], *out[LSG_NODE_COUNT], *acc[LSG_NODE_COUNT];
    for (int i = 0; i < LSG_INPUT_NEURONS * frames; i++) {
        long long x;
        if (scanf("%lld", &x) != 1 || x < 0 || x > LSG_INPUT_MAX) return 2;
        input[i] = x;
    }
    for (int k = 0; k < LSG_NODE_COUNT; k++) {
        v[k] = calloc(LSG_NODES[k].neurons, sizeof(int64_t));
        out[k] = calloc(LSG_NODES[k].neurons, sizeof(int64_t));
        acc[k] = calloc(LSG_NODES[k].neurons, sizeof(int64_t));
    }
    for (int t = 0; t < LSG_TIMESTEPS; t++) {
        const int64_t *x = input + (frames > 1 ? t * LSG_INPUT_NEURONS : 0);
        for (int k = 0; k < LSG_NODE_COUNT; k++) {
            const lsg_node_t *node = &LSG_NODES[k];
            for (int n = 0; n < node->neurons; n++) acc[k][n] = 0;
            for (int e = 0; e < LSG_EDGE_COUNT; e++)
                if (LSG_EDGES[e].target == k)
                    edge_add(&LSG_EDGES[e], LSG_EDGES[e].source == LSG_SOURCE_INPUT ? x : out[LSG_EDGES[e].source],
                             acc[k]);
            printf("t %d %s", t, node->name);
            for (int n = 0; n < node->neurons; n++) {
                int64_t raw = decay(v[k][n], node->decay_code) + acc[k][n] + node->bias[n / (node->h * node->w)];
                int64_t sat = raw < LSG_MEMBRANE_MIN ? LSG_MEMBRANE_MIN : raw > LSG_MEMBRANE_MAX ? LSG_MEMBRANE_MAX : raw;
                /* the readout never fires: it holds its saturated membrane */
                int spike = !node->readout && (LSG_THRESHOLD_GE ? sat >= node->vth : sat > node->vth);
                v[k][n] = spike ? 0 : sat;
                out[k][n] = spike;
                printf(" %lld", (long long)(node->readout ? v[k][n] : out[k][n]));
            }
            printf("\n");
        }
    }
    int best = 0;
    for (int n = 1; n < LSG_CLASSES; n++)
        if (v[LSG_READOUT][n] > v[LSG_READOUT][best]) best = n; /* strictly greater: the lowest index wins a tie */
    printf("class %d\n", best);
    return 0;
}
