// SPDX-License-Identifier: GPL-2.0-only
/*
 * IPE with decisions made in Rust: LSM registration, blobs and the boot
 * policy. Follows security/ipe/ipe.c of Linux 6.12,
 * Copyright (C) 2020-2024 Microsoft Corporation.
 */
#include <uapi/linux/lsm.h>

#include "ipe.h"

/* Boot policy text from boot_policy.S; both are NULL-equal when none is configured. */
extern const char ipe_rust_boot_policy[];
extern const char ipe_rust_boot_policy_end[];

bool ipe_enabled;

static struct lsm_blob_sizes ipe_blobs __ro_after_init = {
	.lbs_superblock = sizeof(struct ipe_superblock),
#ifdef CONFIG_IPE_RUST_PROP_DM_VERITY
	.lbs_bdev = sizeof(struct ipe_bdev),
#endif
#ifdef CONFIG_IPE_RUST_PROP_FS_VERITY_BUILTIN_SIG
	.lbs_inode = sizeof(struct ipe_inode),
#endif
};

/* Same name and id as the C IPE, which this LSM replaces. */
static const struct lsm_id ipe_lsmid = {
	.name = "ipe",
	.id = LSM_ID_IPE,
};

struct ipe_superblock *ipe_sb(const struct super_block *sb)
{
	return sb->s_security + ipe_blobs.lbs_superblock;
}

#ifdef CONFIG_IPE_RUST_PROP_DM_VERITY
struct ipe_bdev *ipe_bdev(struct block_device *b)
{
	return b->bd_security + ipe_blobs.lbs_bdev;
}
#endif

#ifdef CONFIG_IPE_RUST_PROP_FS_VERITY_BUILTIN_SIG
struct ipe_inode *ipe_inode(const struct inode *inode)
{
	return inode->i_security + ipe_blobs.lbs_inode;
}
#endif

static struct security_hook_list ipe_hooks[] __ro_after_init = {
	LSM_HOOK_INIT(bprm_check_security, ipe_bprm_check_security),
	LSM_HOOK_INIT(mmap_file, ipe_mmap_file),
	LSM_HOOK_INIT(file_mprotect, ipe_file_mprotect),
	LSM_HOOK_INIT(kernel_read_file, ipe_kernel_read_file),
	LSM_HOOK_INIT(kernel_load_data, ipe_kernel_load_data),
	LSM_HOOK_INIT(initramfs_populated, ipe_unpack_initramfs),
#ifdef CONFIG_IPE_RUST_PROP_DM_VERITY
	LSM_HOOK_INIT(bdev_alloc_security, ipe_bdev_alloc_security),
	LSM_HOOK_INIT(bdev_free_security, ipe_bdev_free_security),
	LSM_HOOK_INIT(bdev_setintegrity, ipe_bdev_setintegrity),
#endif
#ifdef CONFIG_IPE_RUST_PROP_FS_VERITY_BUILTIN_SIG
	LSM_HOOK_INIT(inode_setintegrity, ipe_inode_setintegrity),
#endif
};

/*
 * Registers the hooks and activates the boot policy. A boot policy that
 * fails to parse panics: the C IPE only warns and then runs with no
 * policy, which allows everything.
 */
static int __init ipe_init(void)
{
	size_t len = ipe_rust_boot_policy_end - ipe_rust_boot_policy;
	struct ipe_policy *p;

	ipe_rust_log_version();
#ifdef CONFIG_SECURITY_IPE_RUST_SELFTEST
	ipe_rust_selftest();
#endif

	if (len) {
		p = ipe_new_policy(ipe_rust_boot_policy, len, NULL, 0);
		if (IS_ERR(p))
			panic("ipe: the boot policy (CONFIG_IPE_RUST_BOOT_POLICY) failed to parse: %ld; fix the policy file and rebuild the kernel\n",
			      PTR_ERR(p));
		rcu_assign_pointer(ipe_active_policy, p);
		pr_info("boot policy \"%s\" version %hu.%hu.%hu is active\n",
			p->name, p->version.major, p->version.minor,
			p->version.rev);
	}

	security_add_hooks(ipe_hooks, ARRAY_SIZE(ipe_hooks), &ipe_lsmid);
	ipe_enabled = true;

	return 0;
}

DEFINE_LSM(ipe) = {
	.name = "ipe",
	.init = ipe_init,
	.blobs = &ipe_blobs,
};
