//! The kernel command line's IMA parameters, and the GRUB drop-in that sets them.

use crate::profile::ImaMode;

/// Where Bulwark's GRUB drop-in lives.
pub const GRUB_DROPIN: &str = "/etc/default/grub.d/50-bulwark-ima.cfg";

/// The IMA parameters of a kernel command line (the last one wins, as in the kernel).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImaCmdline {
    pub appraise: Option<String>,
    pub policy: Option<String>,
    pub template: Option<String>,
}

impl ImaCmdline {
    pub fn parse(cmdline: &str) -> ImaCmdline {
        let mut c = ImaCmdline::default();
        for word in cmdline.split_ascii_whitespace() {
            if let Some(v) = word.strip_prefix("ima_appraise=") {
                c.appraise = Some(v.to_owned());
            } else if let Some(v) = word.strip_prefix("ima_policy=") {
                c.policy = Some(v.to_owned());
            } else if let Some(v) = word.strip_prefix("ima_template=") {
                c.template = Some(v.to_owned());
            }
        }
        c
    }

    /// The appraisal mode this boot runs in. Without `ima_appraise=` a
    /// kernel built with IMA appraisal enforces (`ima_appraise =
    /// IMA_APPRAISE_ENFORCE` in ima_main.c) whatever policy is loaded.
    pub fn appraise_mode(&self) -> &str {
        match self.appraise.as_deref() {
            None => "enforce",
            Some(v) if v.starts_with("enforce") => "enforce",
            Some(v) if v.starts_with("fix") => "fix",
            Some(v) if v.starts_with("log") => "log",
            Some(v) if v.starts_with("off") => "off",
            Some(_) => "enforce",
        }
    }

    /// Built-in policies (`ima_policy=appraise_tcb`, `secure_boot`) that
    /// appraise before systemd loads the custom policy.
    pub fn builtin_appraisal(&self) -> Option<&str> {
        let p = self.policy.as_deref()?;
        p.split('|').find(|w| *w == "appraise_tcb" || *w == "secure_boot")
    }
}

/// The `ima_appraise=` value a profile mode needs on the command line.
pub fn wanted_appraise(mode: ImaMode) -> &'static str {
    match mode {
        ImaMode::Off | ImaMode::Measure => "off",
        ImaMode::Fix => "fix",
        ImaMode::Enforce => "enforce",
    }
}

/// The GRUB drop-in: appended to `GRUB_CMDLINE_LINUX`, so every menu entry
/// (recovery included) boots in the same mode. grub-mkconfig sources it
/// after /etc/default/grub; a later `ima_appraise=` in
/// `GRUB_CMDLINE_LINUX_DEFAULT` would still win, and health then shows it.
pub fn grub_dropin(mode: ImaMode) -> String {
    let want = wanted_appraise(mode);
    format!(
        "# Managed by Bulwark ([ima] mode = \"{}\"): the IMA appraisal mode of the next boot.\n\
         # Takes effect after `update-grub` and a reboot.\n\
         GRUB_CMDLINE_LINUX=\"${{GRUB_CMDLINE_LINUX}} ima_appraise={want}\"\n",
        mode.as_str()
    )
}
