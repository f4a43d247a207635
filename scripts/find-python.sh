# Sourced by the set-up scripts: find_python VERSION prints the path of a working python
# VERSION (on PATH, or installed by pyenv), or fails.
find_python() {
    local version=$1 candidate
    for candidate in "python$version" "$(pyenv root 2>/dev/null)/versions/$version"*/bin/python"$version"; do
        # pyenv shims exist for every installed version but fail unless that one is active.
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c '' >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}
