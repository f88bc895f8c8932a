/* Wine 8.0 has no bcryptprimitives.dll, whose ProcessPrng Rust's std uses
 * for randomness on Windows. This stand-in forwards to RtlGenRandom
 * (SystemFunction036 in advapi32), which Wine has. Test use only. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
