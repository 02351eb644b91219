#!/usr/bin/env bash
# The performance issue's GPU checks, prepared as one device call each (the device tool runs a
# command in the repository root of a copy of this tree; $OUT comes back):
#
#   bench/gpu_session.sh checks   the fused kernels on CUDA (tests/test_fused.py: Triton on the
#                                 GPU, numba on the host) and bench/fake_quant_gpu.py     ~3 min
#   bench/gpu_session.sh train [ARGS]   bench/train_speed_gpu.py ARGS (default: T = 2 and 6; one
#                                 T per call, --timesteps 2, then 6, if time is short)     ~4 min per T
#   bench/gpu_session.sh simulate [ARGS]   bench/simulate_gpu.py ARGS: lsg-deploy simulate --device
#                                 cuda on a full-width ResNet-19 bundle over 10,000 CIFAR-10-format
#                                 images, checked == against the reference on 32            ~4 min
#
# The device image has torch, triton, numba, pytest and numpy but not the peers: they travel as
# wheels in .whl (ignored by git), fetched here once:
#
#   mkdir -p .git/info && echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform any -d .whl spikingjelly==2.0.0 snntorch==1.0.0 nir==1.0.8 loguru==0.7.3
#
# and each call names .whl in carry, e.g. run(command="bench/gpu_session.sh checks",
# carry=[".whl"], timeout_s=420). Logs go to $OUT (or /tmp/gpu-session without the tool).
set -uo pipefail
export PYTHONUNBUFFERED=1
out=${OUT:-/tmp/gpu-session}
mkdir -p "$out"
python=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
"$python" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, \
'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))" | tee "$out/versions.log"

case "${1:-}" in
    checks)
        status=0
        timeout 240 "$python" -m pytest -q -p no:cacheprovider tests/test_fused.py 2>&1 | tee "$out/fused_tests.log" \
            || status=1
        timeout 240 "$python" bench/fake_quant_gpu.py --check 4 2>&1 | tee "$out/fake_quant_gpu.log" || status=1
        exit $status
        ;;
    train)
        shift
        timeout 560 "$python" bench/train_speed_gpu.py "$@" 2>&1 | tee "$out/train_speed_gpu.log"
        ;;
    simulate)
        shift
        timeout 560 "$python" bench/simulate_gpu.py --json "$out/simulate_gpu.json" "$@" 2>&1 \
            | tee "$out/simulate_gpu.log"
        ;;
    *)
        echo "usage: bench/gpu_session.sh checks | train [bench/train_speed_gpu.py's arguments] |" \
             "simulate [bench/simulate_gpu.py's arguments]" >&2
        exit 2
        ;;
esac
