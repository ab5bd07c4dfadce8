/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The boot policy text (CONFIG_IPE_RUST_BOOT_POLICY), embedded as is.
 * The Makefile defines IPE_RUST_BOOT_POLICY_FILE only when a path is set;
 * otherwise the two symbols are equal and there is no boot policy.
 */
	.section .rodata, "a"
	.globl ipe_rust_boot_policy
ipe_rust_boot_policy:
#ifdef IPE_RUST_BOOT_POLICY_FILE
	.incbin IPE_RUST_BOOT_POLICY_FILE
#endif
	.globl ipe_rust_boot_policy_end
ipe_rust_boot_policy_end:
