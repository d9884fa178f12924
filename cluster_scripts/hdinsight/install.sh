#!/usr/bin/env bash
# HDInsight script action: installs tilescan with lake support (its `azure` extra) into a
# Python environment on this node and points Spark's PYSPARK_PYTHON at it. It never installs
# pyspark: jobs run on the cluster's own Spark, whose spark-submit gives every Python its pyspark.
#
#   install.sh --package SRC --prefix DIR [--python PY | --conda] [--constraints SRC]
#              [--sha256 HEX] [--constraints-sha256 HEX] [--spark-env FILE]
#              [--pip-args "ARGS"] [--system-site-packages]
#
#   --package      a wheel or sdist (local path, https:// URL, or a cluster storage URL such as
#                  wasbs://, abfs:// or abfss://, fetched with `hadoop fs`), or a source folder
#   --prefix       the environment (DIR); created when DIR/bin/python is missing
#   --python       the interpreter that creates the environment with venv (default: python3);
#                  it must be Python 3.10 to 3.12
#   --conda        create the environment with conda instead (`conda create -p DIR python=3.11`;
#                  $CONDA_EXE, or conda on PATH, or HDInsight's /usr/bin/anaconda/bin/conda): for
#                  nodes whose python3 is older than 3.10
#   --constraints  pip constraints file, fetched like --package (default: none)
#   --sha256, --constraints-sha256
#                  expected SHA-256 of the fetched file; a mismatch stops the install
#   --spark-env    the spark-env.sh to update (default: /etc/spark3/conf/spark-env.sh or
#                  /etc/spark2/conf/spark-env.sh, whichever exists)
#   --pip-args     extra pip install arguments, split on whitespace (e.g. "--no-index
#                  --find-links /mnt/wheels")
#   --system-site-packages
#                  passed to venv when the environment is created
#
# Script actions run again on every node added when a cluster scales out, and people rerun
# them by hand, so a rerun with the same inputs changes nothing: DIR/.tilescan-install holds a
# hash of the package, the constraints and the pip arguments, and the install is skipped while
# it matches. The marker is written last, so a failed install is retried in full next time.
# The spark-env.sh block is checked on every run, since Ambari may rewrite that file.
#
# Log: $TILESCAN_LOG (default /var/log/tilescan/install.log), and stderr, which HDInsight keeps
# with the script action's history. An existing PREFIX/bin/python (a conda env, say) is reused.
# Needs root only where DIR, the log or spark-env.sh are not writable by the caller.
set -Eeuo pipefail

readonly MARKER_NAME=.tilescan-install
readonly BLOCK_BEGIN="# >>> tilescan: PYSPARK_PYTHON (managed by tilescan's install.sh) >>>"
readonly BLOCK_END="# <<< tilescan <<<"
#: The Python the environment gets from conda (--conda); 3.10 to 3.12 are supported.
readonly CONDA_PYTHON=3.11
LOG=${TILESCAN_LOG:-/var/log/tilescan/install.log}
WORK_DIR=''
RUNNING=''

# Messages go to stderr, so that functions can print results on stdout.
log() {
    printf '%s install.sh[%d]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$$" "$*" |
        tee -a "$LOG" >&2
}

die() {
    log "ERROR: $*"
    exit 1
}

# Runs a command with its output in the log as well as on stderr; pipefail keeps its status.
run() {
    log "+ $*"
    RUNNING="$*"
    "$@" 2>&1 | tee -a "$LOG" >&2
    RUNNING=''
}

# Logs the failing line with the lines that called it, innermost first.
on_error() {
    local status=$1 command=${RUNNING:-$2} i where=''
    # The last frame is the script's top level, which bash also calls "main".
    for ((i = 1; i < ${#FUNCNAME[@]} - 1; i++)); do
        where+="${where:+ <- }line ${BASH_LINENO[i - 1]} (${FUNCNAME[i]})"
    done
    log "FAILED (exit $status) at $where: $command"
}

cleanup() {
    if [[ -n $WORK_DIR ]]; then
        rm -rf "$WORK_DIR"
    fi
}

usage() {
    sed -n '6,26p' "${BASH_SOURCE[0]}" | sed -e 's/^#   //' -e 's/^#$//' >&2
    exit 2
}

# ---------------------------------------------------------------------------------------------
# Fetching and hashing

sha256_of() {
    sha256sum "$1" | cut -d' ' -f1
}

# Copies SRC (a local file or a URL) into the work folder and prints the local path; verifies
# it against EXPECTED when one is given.
fetch() {
    local src=$1 expected=$2 dest
    dest="$WORK_DIR/$(basename "${src%%\?*}")"
    case $src in
        http://* | https://*)
            # --retry: script actions on freshly provisioned nodes meet transient DNS errors.
            curl -fsSL --retry 5 --retry-delay 3 -o "$dest" "$src" ||
                die "cannot download $src"
            ;;
        wasb://* | wasbs://* | abfs://* | abfss://* | adl://* | hdfs://*)
            command -v hadoop >/dev/null || die "$src needs the hadoop command, which is missing"
            run hadoop fs -copyToLocal "$src" "$dest"
            ;;
        *)
            [[ -f $src ]] || die "no such file: $src"
            cp "$src" "$dest"
            ;;
    esac
    if [[ -n $expected ]]; then
        local actual
        actual=$(sha256_of "$dest")
        [[ ${actual,,} == "${expected,,}" ]] ||
            die "checksum mismatch for $src: expected sha256 $expected, got $actual"
        log "checksum ok: $src"
    elif [[ $src == *://* ]]; then
        log "WARNING: $src was fetched without a checksum; pass --sha256/--constraints-sha256"
    fi
    printf '%s\n' "$dest"
}

# A source folder is identified by the content of its files, skipping what builds, installs and
# editors leave behind (which pip itself writes there: build/, *.egg-info), and virtual environments.
hash_folder() {
    local dir=$1
    (
        cd "$dir"
        find . \( -name .git -o -name '.venv*' -o -name venv -o -name .tools -o -name build \
            -o -name dist -o -name '*.egg-info' -o -name __pycache__ -o -name .pytest_cache \
            -o -name .hypothesis -o -name .ruff_cache -o -name node_modules -o -name .ipynb_checkpoints \) -prune \
            -o -type f -print0 |
            LC_ALL=C sort -z | xargs -0 -r sha256sum | sha256sum | cut -d' ' -f1
    )
}

# ---------------------------------------------------------------------------------------------
# spark-env.sh

default_spark_env() {
    local candidate
    for candidate in /etc/spark3/conf/spark-env.sh /etc/spark2/conf/spark-env.sh; do
        if [[ -f $candidate ]]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    die "no spark-env.sh in /etc/spark3/conf or /etc/spark2/conf; pass --spark-env"
}

# Replaces the marked block (or appends it) so that a rerun never adds a second one. The file is
# rewritten in place, keeping its owner and mode.
update_spark_env() {
    local file=$1 python=$2 new
    [[ -d $(dirname "$file") ]] || die "no folder for --spark-env $file"
    new="$WORK_DIR/spark-env.sh"
    {
        if [[ -f $file ]]; then
            awk -v begin="$BLOCK_BEGIN" -v end="$BLOCK_END" '
                $0 == begin { skipping = 1; next }
                skipping && $0 == end { skipping = 0; next }
                !skipping { print }
            ' "$file"
        fi
        printf '%s\n' "$BLOCK_BEGIN"
        printf 'export PYSPARK_PYTHON=%q\n' "$python"
        printf '%s\n' "$BLOCK_END"
    } >"$new"
    if [[ -f $file ]] && cmp -s "$new" "$file"; then
        log "spark-env: $file already sets PYSPARK_PYTHON=$python"
    else
        cat "$new" >"$file"
        log "spark-env: $file now sets PYSPARK_PYTHON=$python"
    fi
}

# ---------------------------------------------------------------------------------------------
# The environment

# Stops unless PY is Python 3.10 to 3.12 (what tilescan's scoring install supports).
check_python() {
    local py=$1 what=$2 version
    version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) ||
        die "$what ($py) does not run"
    "$py" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))' ||
        die "$what ($py) is Python $version; tilescan needs 3.10 to 3.12: pass --python with one, or --conda to make one"
}

conda_executable() {
    local candidate
    for candidate in "${CONDA_EXE:-}" "$(command -v conda || true)" /usr/bin/anaconda/bin/conda; do
        if [[ -n $candidate && -x $candidate ]]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    die "--conda: no conda found (\$CONDA_EXE, PATH, /usr/bin/anaconda/bin/conda)"
}

create_environment() {
    local prefix=$1 python=$2 conda=$3 system_site=$4
    if [[ -n $conda ]]; then
        run "$(conda_executable)" create --yes --quiet --prefix "$prefix" "python=$CONDA_PYTHON" pip
    else
        run "$python" -m venv ${system_site:+"$system_site"} "$prefix"
    fi
}

# ---------------------------------------------------------------------------------------------

main() {
    local package='' prefix='' python=python3 constraints='' sha='' constraints_sha='' spark_env=''
    local pip_args_line='' system_site='' conda=''
    while (($#)); do
        case $1 in
            --system-site-packages)
                system_site=--system-site-packages
                shift
                continue
                ;;
            --conda)
                conda=yes
                shift
                continue
                ;;
            -h | --help) usage ;;
        esac
        (($# >= 2)) || { echo "install.sh: option $1 needs a value" >&2; usage; }
        case $1 in
            --package) package=$2 ;;
            --prefix) prefix=$2 ;;
            --python) python=$2 ;;
            --constraints) constraints=$2 ;;
            --sha256) sha=$2 ;;
            --constraints-sha256) constraints_sha=$2 ;;
            --spark-env) spark_env=$2 ;;
            --pip-args) pip_args_line=$2 ;;
            *) echo "install.sh: unknown option $1" >&2; usage ;;
        esac
        shift 2
    done
    [[ -n $package ]] || { echo "install.sh: --package is required" >&2; usage; }
    [[ -n $prefix ]] || { echo "install.sh: --prefix is required" >&2; usage; }
    [[ -z $constraints_sha || -n $constraints ]] ||
        { echo "install.sh: --constraints-sha256 without --constraints" >&2; usage; }
    local pip_args=()
    read -r -a pip_args <<<"$pip_args_line"
    [[ $prefix == /* ]] || prefix=$PWD/$prefix

    mkdir -p "$(dirname "$LOG")"
    trap 'on_error "$?" "$BASH_COMMAND"' ERR
    trap cleanup EXIT
    WORK_DIR=$(mktemp -d)
    log "start: package=$package prefix=$prefix python=$python constraints=${constraints:-none}"

    [[ -n $spark_env ]] || spark_env=$(default_spark_env)
    if [[ ! -x $prefix/bin/python && -z $conda ]]; then  # before any download
        command -v "$python" >/dev/null || die "no Python interpreter '$python' (see --python)"
        check_python "$python" "--python"
    fi

    local package_path package_id
    if [[ -d $package ]]; then
        [[ -z $sha ]] || die "--sha256 applies to a file, but $package is a folder"
        package_path=$(cd "$package" && pwd)
        package_id="folder:$(hash_folder "$package_path")"
    else
        package_path=$(fetch "$package" "$sha")
        package_id="file:$(basename "$package_path"):$(sha256_of "$package_path")"
    fi
    local constraint_args=() constraints_id=none
    if [[ -n $constraints ]]; then
        local constraints_path
        constraints_path=$(fetch "$constraints" "$constraints_sha")
        constraints_id=$(sha256_of "$constraints_path")
        constraint_args=(--constraint "$constraints_path")
    fi
    local wanted
    wanted=$(printf '%s\n' "$package_id" "constraints:$constraints_id" "pip:${pip_args[*]}" |
        sha256sum | cut -d' ' -f1)

    local env_python="$prefix/bin/python" marker="$prefix/$MARKER_NAME" installed=''
    if [[ -f $marker ]]; then
        installed=$(head -n 1 "$marker")
    fi
    if [[ -x $env_python && $installed == "$wanted" ]]; then
        log "already installed ($wanted): nothing to do in $prefix"
    else
        if [[ ! -x $env_python ]]; then
            create_environment "$prefix" "$python" "$conda" "$system_site"
        fi
        check_python "$env_python" "the environment's Python"
        local pip=("$env_python" -m pip --disable-pip-version-check --no-input)
        # The azure extra: adlfs and azure-identity, for abfs:// and az:// URLs. No pyspark.
        run "${pip[@]}" install "${constraint_args[@]}" "${pip_args[@]}" "${package_path}[azure]"
        if [[ $package_path == *.whl ]]; then
            # pip keeps an installed wheel of the same version (it reinstalls folders and sdists
            # by itself), and a changed package must replace the old one.
            run "${pip[@]}" install --no-deps --force-reinstall "${pip_args[@]}" "$package_path"
        fi
        run "$env_python" -c 'import app.score, engines, pixels, scoring.pipeline, tiling, adlfs'
        if "$env_python" -m pip show --quiet pyspark >/dev/null 2>&1; then
            log "WARNING: pyspark is installed in $prefix (by --pip-args or a constraint?); jobs should use the cluster's own"
        fi
        printf '%s\n%s\n' "$wanted" "$package_id" >"$marker"
        log "installed ($wanted) into $prefix"
    fi

    update_spark_env "$spark_env" "$env_python"
    log "done"
}

main "$@"
