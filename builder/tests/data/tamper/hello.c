/* A dynamically linked program: the tamper test runs it through ld.so. */
#include <stdio.h>

int main(void)
{
	puts("hello from an unverified program");
	return 0;
}
