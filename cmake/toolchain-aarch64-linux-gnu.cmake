# Cross build for aarch64 Linux on a Debian host (scripts/deps-aarch64 installs what it names):
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64-linux-gnu.cmake
# Libraries come from the Debian :arm64 packages (multiarch, /usr/lib/aarch64-linux-gnu) and the
# cross sysroot (/usr/aarch64-linux-gnu); ctest runs the binaries under qemu-user.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Multiarch: the arm64 packages install headers into /usr/include (shared with the host) and
# libraries and CMake configs into /usr/lib/aarch64-linux-gnu. Search the cross sysroot and /usr
# (with CMAKE_LIBRARY_ARCHITECTURE selecting the aarch64 lib dir), never the host's programs.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu /usr)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_LIBRARY_PATH /usr/lib/aarch64-linux-gnu /usr/aarch64-linux-gnu/lib)
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)

# ctest (and add_test with a target as the command) prefixes every test with this. `-L /`: the
# run-time libraries are the multiarch :arm64 ones (/lib/aarch64-linux-gnu: libc6:arm64,
# libstdc++6:arm64, libmimalloc2.0:arm64), with their own /lib/ld-linux-aarch64.so.1. With
# `-L /usr/aarch64-linux-gnu` qemu takes the cross package's older ld.so (2.36-8cross1) but
# still finds libc.so.6 in /lib/aarch64-linux-gnu (2.36-9+deb12u14): measured here, the mix
# hangs in pthread_create. Linking stays against the cross sysroot (older glibc: compatible).
find_program(PATCHCALL_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static REQUIRED)
set(CMAKE_CROSSCOMPILING_EMULATOR ${PATCHCALL_QEMU_AARCH64};-L;/)
