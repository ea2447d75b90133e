"""One lab: `fab provision` / `fab plan` (`provisioning`) and its --auto-stop (`auto_stop`)."""
