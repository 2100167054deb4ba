# Sourced by scripts/ptx.sh and scripts/cuda-ci.sh: installs the pinned NVRTC wheel (if missing) outside
# the repository and puts its library on LD_LIBRARY_PATH (cudarc dlopens libnvrtc by bare name).
# The wheel carries NVIDIA's licence: it is installed here, never committed.
NVRTC_WHEEL="nvidia-cuda-nvrtc-cu12==12.9.86"
NVRTC_DIR="${NINO_NVRTC_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nino/nvrtc-12.9.86}"
if [[ ! -e "$NVRTC_DIR/nvidia/cuda_nvrtc/lib/libnvrtc.so.12" ]]; then
    echo "installing $NVRTC_WHEEL into $NVRTC_DIR"
    python3 -m pip install --quiet --disable-pip-version-check --target "$NVRTC_DIR" "$NVRTC_WHEEL"
fi
export LD_LIBRARY_PATH="$NVRTC_DIR/nvidia/cuda_nvrtc/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
