/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * IPE with decisions made in Rust: declarations shared by the C shim files
 * and the interface of the Rust glue (ipe_rust.rs).
 *
 * The C side registers the LSM, keeps the blobs, publishes the active
 * policy with RCU, serves securityfs, verifies PKCS#7 and writes audit
 * records, because Linux 6.12 has no Rust bindings for these. Parsing and
 * every policy decision happen in Rust.
 *
 * Structure and behaviour follow security/ipe/ of Linux 6.12,
 * Copyright (C) 2020-2024 Microsoft Corporation.
 */
#ifndef _IPE_RUST_H
#define _IPE_RUST_H

#ifdef pr_fmt
#undef pr_fmt
#endif
#define pr_fmt(fmt) "ipe: " fmt

#include <linux/lsm_hooks.h>
#include <linux/types.h>
#include <linux/fs.h>
#include <linux/mutex.h>
#include <linux/rcupdate.h>

/* Operations, in the order of the engine's operation table. */
enum ipe_op_type {
	IPE_OP_EXEC = 0,
	IPE_OP_FIRMWARE,
	IPE_OP_KERNEL_MODULE,
	IPE_OP_KEXEC_IMAGE,
	IPE_OP_KEXEC_INITRAMFS,
	IPE_OP_POLICY,
	IPE_OP_X509,
	__IPE_OP_MAX,
};

#define IPE_OP_INVALID __IPE_OP_MAX

enum ipe_hook_type {
	IPE_HOOK_BPRM_CHECK = 0,
	IPE_HOOK_MMAP,
	IPE_HOOK_MPROTECT,
	IPE_HOOK_KERNEL_READ,
	IPE_HOOK_KERNEL_LOAD,
	__IPE_HOOK_MAX
};

enum ipe_action_type {
	IPE_ACTION_ALLOW = 0,
	IPE_ACTION_DENY,
};

/* Source of a decision: a rule, the operation's default or the global default. */
enum ipe_match {
	IPE_MATCH_RULE = 0,
	IPE_MATCH_TABLE,
	IPE_MATCH_GLOBAL,
};

/* Property kinds reported by ipe_rust_rule_property(), as in the audit text. */
enum ipe_prop_type {
	IPE_PROP_BOOT_VERIFIED_FALSE,
	IPE_PROP_BOOT_VERIFIED_TRUE,
	IPE_PROP_DMV_ROOTHASH,
	IPE_PROP_DMV_SIG_FALSE,
	IPE_PROP_DMV_SIG_TRUE,
	IPE_PROP_FSV_DIGEST,
	IPE_PROP_FSV_SIG_FALSE,
	IPE_PROP_FSV_SIG_TRUE,
	__IPE_PROP_MAX
};

/* Bits of ipe_rust_event.providers: property providers compiled in. */
#define IPE_PROVIDER_DM_VERITY		BIT(0)
#define IPE_PROVIDER_DM_VERITY_SIG	BIT(1)
#define IPE_PROVIDER_FS_VERITY		BIT(2)
#define IPE_PROVIDER_FS_VERITY_SIG	BIT(3)

/* A parsed policy, owned by the Rust glue. */
struct ipe_rust_policy;

/* Header facts of a parsed policy; name points into Rust-owned memory. */
struct ipe_rust_policy_info {
	const u8 *name;
	size_t name_len;
	u16 version[3];
};

/*
 * The facts of one event that properties evaluate. Digest pointers are
 * NULL when absent and must stay valid for the duration of the call.
 */
struct ipe_rust_event {
	u32 op;
	u32 hook;
	u32 providers;
	bool has_file;
	bool initramfs;
	bool has_bdev;
	bool dmv_signed;
	bool has_inode;
	bool fsv_enabled;
	bool fsv_signed;
	const char *dmv_alg;
	size_t dmv_alg_len;
	const u8 *dmv_digest;
	size_t dmv_digest_len;
	const char *fsv_alg;
	size_t fsv_alg_len;
	const u8 *fsv_digest;
	size_t fsv_digest_len;
};

struct ipe_rust_decision {
	u32 action;
	u32 match;
	u32 rule;
};

struct ipe_rust_rule_info {
	u32 op;
	u32 action;
	u32 property_count;
};

struct ipe_rust_property_info {
	u32 type;
	const u8 *alg;
	size_t alg_len;
	const u8 *digest;
	size_t digest_len;
};

/* Implemented in ipe_rust.rs. All return 0 or a negative errno. */
int ipe_rust_policy_parse(const u8 *text, size_t len,
			  struct ipe_rust_policy **out,
			  struct ipe_rust_policy_info *info);
void ipe_rust_policy_free(struct ipe_rust_policy *policy);
int ipe_rust_evaluate(const struct ipe_rust_policy *policy,
		      const struct ipe_rust_event *event,
		      struct ipe_rust_decision *decision);
int ipe_rust_rule_info(const struct ipe_rust_policy *policy, u32 rule,
		       struct ipe_rust_rule_info *info);
int ipe_rust_rule_property(const struct ipe_rust_policy *policy, u32 rule,
			   u32 index, struct ipe_rust_property_info *info);
void ipe_rust_log_version(void);
#ifdef CONFIG_SECURITY_IPE_RUST_SELFTEST
void ipe_rust_selftest(void);
#endif

struct ipe_policy_version {
	u16 major;
	u16 minor;
	u16 rev;
};

struct ipe_policy {
	const char *pkcs7;
	size_t pkcs7len;

	const char *text;
	size_t textlen;

	/* NUL-terminated copy of policy_name, for securityfs and audit. */
	char *name;
	struct ipe_policy_version version;
	struct ipe_rust_policy *parsed;

	struct dentry *policyfs;
};

struct ipe_superblock {
	bool initramfs;
};

#ifdef CONFIG_IPE_RUST_PROP_DM_VERITY
struct ipe_digest {
	char *alg;
	u8 *digest;
	size_t digest_len;
};

struct ipe_bdev {
#ifdef CONFIG_IPE_RUST_PROP_DM_VERITY_SIGNATURE
	bool dm_verity_signed;
#endif
	struct ipe_digest __rcu *root_hash;
};
#endif

#ifdef CONFIG_IPE_RUST_PROP_FS_VERITY_BUILTIN_SIG
struct ipe_inode {
	bool fs_verity_signed;
};
#endif

/* An event as the hooks see it, before it is flattened for Rust. */
struct ipe_eval_ctx {
	enum ipe_op_type op;
	enum ipe_hook_type hook;
	const struct file *file;
};

/* ipe.c */
extern bool ipe_enabled;
struct ipe_superblock *ipe_sb(const struct super_block *sb);
#ifdef CONFIG_IPE_RUST_PROP_DM_VERITY
struct ipe_bdev *ipe_bdev(struct block_device *b);
#endif
#ifdef CONFIG_IPE_RUST_PROP_FS_VERITY_BUILTIN_SIG
struct ipe_inode *ipe_inode(const struct inode *inode);
#endif

/* eval.c */
extern struct ipe_policy __rcu *ipe_active_policy;
extern bool success_audit;
extern bool enforce;
int ipe_evaluate_event(const struct ipe_eval_ctx *ctx);

/* hooks.c */
int ipe_bprm_check_security(struct linux_binprm *bprm);
int ipe_mmap_file(struct file *f, unsigned long reqprot, unsigned long prot,
		  unsigned long flags);
int ipe_file_mprotect(struct vm_area_struct *vma, unsigned long reqprot,
		      unsigned long prot);
int ipe_kernel_read_file(struct file *file, enum kernel_read_file_id id,
			 bool contents);
int ipe_kernel_load_data(enum kernel_load_data_id id, bool contents);
void ipe_unpack_initramfs(void);
#ifdef CONFIG_IPE_RUST_PROP_DM_VERITY
int ipe_bdev_alloc_security(struct block_device *bdev);
void ipe_bdev_free_security(struct block_device *bdev);
int ipe_bdev_setintegrity(struct block_device *bdev,
			  enum lsm_integrity_type type,
			  const void *value, size_t size);
#endif
#ifdef CONFIG_IPE_RUST_PROP_FS_VERITY_BUILTIN_SIG
int ipe_inode_setintegrity(const struct inode *inode,
			   enum lsm_integrity_type type,
			   const void *value, size_t size);
#endif

/* policy.c */
extern struct mutex ipe_policy_lock;
struct ipe_policy *ipe_new_policy(const char *text, size_t textlen,
				  const char *pkcs7, size_t pkcs7len);
void ipe_free_policy(struct ipe_policy *p);
int ipe_update_policy(struct inode *root, const char *text, size_t textlen,
		      const char *pkcs7, size_t pkcs7len);
int ipe_set_active_pol(const struct ipe_policy *p);

/* fs.c and policy_fs.c */
extern struct dentry *policy_root;
int ipe_new_policyfs_node(struct ipe_policy *p);
void ipe_del_policyfs_node(struct ipe_policy *p);

/* audit.c */
void ipe_audit_match(const struct ipe_eval_ctx *ctx,
		     const struct ipe_policy *pol,
		     const struct ipe_rust_decision *decision);
void ipe_audit_policy_load(const struct ipe_policy *p);
void ipe_audit_policy_activation(const struct ipe_policy *op,
				 const struct ipe_policy *np);
void ipe_audit_enforce(bool new_enforce, bool old_enforce);

#endif /* _IPE_RUST_H */
