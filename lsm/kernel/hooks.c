// SPDX-License-Identifier: GPL-2.0-only
/*
 * IPE with decisions made in Rust: the LSM hooks. They map each event to
 * an operation and store dm-verity and fs-verity facts in the blobs.
 * Follows security/ipe/hooks.c of Linux 6.12,
 * Copyright (C) 2020-2024 Microsoft Corporation.
 */
#include <linux/fs.h>
#include <linux/fs_struct.h>
#include <linux/types.h>
#include <linux/binfmts.h>
#include <linux/mman.h>
#include <linux/blk_types.h>
#include <linux/rcupdate.h>
#include <linux/slab.h>

#include "ipe.h"

int ipe_bprm_check_security(struct linux_binprm *bprm)
{
	struct ipe_eval_ctx ctx = {
		.op = IPE_OP_EXEC,
		.hook = IPE_HOOK_BPRM_CHECK,
		.file = bprm->file,
	};

	return ipe_evaluate_event(&ctx);
}

int ipe_mmap_file(struct file *f, unsigned long reqprot __always_unused,
		  unsigned long prot, unsigned long flags)
{
	struct ipe_eval_ctx ctx = {
		.op = IPE_OP_EXEC,
		.hook = IPE_HOOK_MMAP,
		.file = f,
	};

	if (!(prot & PROT_EXEC))
		return 0;

	return ipe_evaluate_event(&ctx);
}

int ipe_file_mprotect(struct vm_area_struct *vma,
		      unsigned long reqprot __always_unused,
		      unsigned long prot)
{
	struct ipe_eval_ctx ctx = {
		.op = IPE_OP_EXEC,
		.hook = IPE_HOOK_MPROTECT,
		.file = vma->vm_file,
	};

	/* Mappings that are already executable were checked when they became so. */
	if (vma->vm_flags & VM_EXEC)
		return 0;

	if (!(prot & PROT_EXEC))
		return 0;

	return ipe_evaluate_event(&ctx);
}

int ipe_kernel_read_file(struct file *file, enum kernel_read_file_id id,
			 bool contents)
{
	struct ipe_eval_ctx ctx = {
		.hook = IPE_HOOK_KERNEL_READ,
		.file = file,
	};

	switch (id) {
	case READING_FIRMWARE:
		ctx.op = IPE_OP_FIRMWARE;
		break;
	case READING_MODULE:
		ctx.op = IPE_OP_KERNEL_MODULE;
		break;
	case READING_KEXEC_INITRAMFS:
		ctx.op = IPE_OP_KEXEC_INITRAMFS;
		break;
	case READING_KEXEC_IMAGE:
		ctx.op = IPE_OP_KEXEC_IMAGE;
		break;
	case READING_POLICY:
		ctx.op = IPE_OP_POLICY;
		break;
	case READING_X509_CERTIFICATE:
		ctx.op = IPE_OP_X509;
		break;
	default:
		ctx.op = IPE_OP_INVALID;
		WARN(1, "no rule setup for kernel_read_file enum %d", id);
	}

	return ipe_evaluate_event(&ctx);
}

int ipe_kernel_load_data(enum kernel_load_data_id id, bool contents)
{
	struct ipe_eval_ctx ctx = {
		.hook = IPE_HOOK_KERNEL_LOAD,
		.file = NULL,
	};

	switch (id) {
	case LOADING_FIRMWARE:
		ctx.op = IPE_OP_FIRMWARE;
		break;
	case LOADING_MODULE:
		ctx.op = IPE_OP_KERNEL_MODULE;
		break;
	case LOADING_KEXEC_INITRAMFS:
		ctx.op = IPE_OP_KEXEC_INITRAMFS;
		break;
	case LOADING_KEXEC_IMAGE:
		ctx.op = IPE_OP_KEXEC_IMAGE;
		break;
	case LOADING_POLICY:
		ctx.op = IPE_OP_POLICY;
		break;
	case LOADING_X509_CERTIFICATE:
		ctx.op = IPE_OP_X509;
		break;
	default:
		ctx.op = IPE_OP_INVALID;
		WARN(1, "no rule setup for kernel_load_data enum %d", id);
	}

	return ipe_evaluate_event(&ctx);
}

/* Marks the superblock the initramfs was unpacked into (boot_verified). */
void ipe_unpack_initramfs(void)
{
	ipe_sb(current->fs->root.mnt->mnt_sb)->initramfs = true;
}

#ifdef CONFIG_IPE_RUST_PROP_DM_VERITY
static void ipe_digest_free(struct ipe_digest *info)
{
	if (!info)
		return;
	kfree(info->alg);
	kfree(info->digest);
	kfree(info);
}

/* The framework zeroes the blob, which means no root hash and unsigned. */
int ipe_bdev_alloc_security(struct block_device *bdev)
{
	return 0;
}

void ipe_bdev_free_security(struct block_device *bdev)
{
	struct ipe_bdev *blob = ipe_bdev(bdev);

	ipe_digest_free(rcu_access_pointer(blob->root_hash));
}

static void ipe_set_dmverity_roothash(struct ipe_bdev *blob,
				      struct ipe_digest *info)
{
	struct ipe_digest *old;

	/* Serialised by device-mapper's md->suspend_lock. */
	old = rcu_replace_pointer(blob->root_hash, info, true);
	if (old) {
		synchronize_rcu();
		ipe_digest_free(old);
	}
}

int ipe_bdev_setintegrity(struct block_device *bdev,
			  enum lsm_integrity_type type,
			  const void *value, size_t size)
{
	const struct dm_verity_digest *digest;
	struct ipe_bdev *blob = ipe_bdev(bdev);
	struct ipe_digest *info;

	if (type == LSM_INT_DMVERITY_SIG_VALID) {
#ifdef CONFIG_IPE_RUST_PROP_DM_VERITY_SIGNATURE
		blob->dm_verity_signed = size > 0 && value;
#endif
		return 0;
	}

	if (type != LSM_INT_DMVERITY_ROOTHASH)
		return -EINVAL;

	if (!value) {
		ipe_set_dmverity_roothash(blob, NULL);
		return 0;
	}
	digest = value;

	info = kzalloc(sizeof(*info), GFP_KERNEL);
	if (!info)
		return -ENOMEM;

	info->digest = kmemdup(digest->digest, digest->digest_len, GFP_KERNEL);
	info->alg = kstrdup(digest->alg, GFP_KERNEL);
	if (!info->digest || !info->alg) {
		ipe_digest_free(info);
		return -ENOMEM;
	}
	info->digest_len = digest->digest_len;

	ipe_set_dmverity_roothash(blob, info);

	return 0;
}
#endif /* CONFIG_IPE_RUST_PROP_DM_VERITY */

#ifdef CONFIG_IPE_RUST_PROP_FS_VERITY_BUILTIN_SIG
int ipe_inode_setintegrity(const struct inode *inode,
			   enum lsm_integrity_type type,
			   const void *value, size_t size)
{
	struct ipe_inode *inode_sec = ipe_inode(inode);

	if (type == LSM_INT_FSVERITY_BUILTINSIG_VALID) {
		inode_sec->fs_verity_signed = size > 0 && value;
		return 0;
	}

	return -EINVAL;
}
#endif /* CONFIG_IPE_RUST_PROP_FS_VERITY_BUILTIN_SIG */
