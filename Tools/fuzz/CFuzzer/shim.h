// libFuzzer's entry point for programs with a main of their own (SwiftPM gives every
// executable one): it runs the fuzzing loop with the command line and the callback given.
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
