/* A shared library for the mmap and mprotect cases of the tamper test. */
int tamper_answer(void)
{
	return 42;
}
