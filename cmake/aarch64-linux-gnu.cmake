# Cross build for 64-bit Arm Linux with Debian's cross toolchain:
#   apt-get install gcc-aarch64-linux-gnu qemu-user-static
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
# ./dev.sh cross does this, and runs the tests under qemu-user.
#
# Libraries for the target come from two places: the toolchain's sysroot
# (/usr/aarch64-linux-gnu: libc, libpthread, libm) and Debian's multiarch
# directories for arm64 packages installed beside the host's
# (/usr/lib/aarch64-linux-gnu: libcmocka0:arm64). Headers of arch-neutral
# packages (cmocka.h) are the host's own in /usr/include.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu /)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER) # build tools are the host's
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# The host's Open MPI is x86-64: no MPI backend in a cross build.
set(MPOOL_WITH_MPI OFF CACHE BOOL "" FORCE)
set(CMAKE_DISABLE_FIND_PACKAGE_MPI ON)

# ctest runs the tests through qemu-user. The target's dynamic loader and
# libc come from Debian's multiarch libc6:arm64 (a dependency of
# libcmocka0:arm64) in /lib/aarch64-linux-gnu, where qemu finds them without
# -L. Only without it is qemu pointed at the toolchain's sysroot: with
# qemu 7.2 and `-L /usr/aarch64-linux-gnu`, a dynamically linked program
# hangs in every fork (the child never runs), which would fail most tests.
#
# The emulator line also
# - preloads qemu-preload.so (built here from qemu-preload.c), which undoes
#   qemu's made-up /proc/self/stat in forked children (without it every
#   lock held by a forked process looks abandoned) and its no-op madvise
#   (without it freed heap memory is not zero when reused): see that file;
# - sets MPOOL_TEST_EMULATOR to qemu's path: the tests skip or adapt the few
#   checks qemu-user cannot honour (docs/PORTING.md lists them), and a test
#   that runs its own program again does so through qemu, since a foreign
#   binary cannot be exec'd without binfmt_misc.
# Toolchain files are read again for every try_compile: build the preload
# library once, in the real build tree.
find_program(MPOOL_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(MPOOL_QEMU_AARCH64)
  if(EXISTS /lib/ld-linux-aarch64.so.1)
    set(_mpool_qemu ${MPOOL_QEMU_AARCH64})
  else()
    set(_mpool_qemu ${MPOOL_QEMU_AARCH64} -L /usr/aarch64-linux-gnu)
  endif()
  set(_mpool_shim ${CMAKE_BINARY_DIR}/qemu-preload.so)
  if(NOT CMAKE_IN_TRY_COMPILE)
    execute_process(COMMAND ${CMAKE_C_COMPILER} -shared -fPIC -O2 -Wall -Wextra -Werror
                            -o ${_mpool_shim} ${CMAKE_CURRENT_LIST_DIR}/qemu-preload.c
                    RESULT_VARIABLE _mpool_rc)
    if(NOT _mpool_rc EQUAL 0)
      message(FATAL_ERROR "cannot build ${_mpool_shim}")
    endif()
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
                 ${CMAKE_CURRENT_LIST_DIR}/qemu-preload.c)
  endif()
  set(CMAKE_CROSSCOMPILING_EMULATOR env MPOOL_TEST_EMULATOR=${MPOOL_QEMU_AARCH64} ${_mpool_qemu}
                                    -E LD_PRELOAD=${_mpool_shim})
endif()
