/* The library the `missing-files` case dlopen()s (soname libnanoimg_missing.so.1). */
int nanoimg_missing_answer(void) { return 42; }
