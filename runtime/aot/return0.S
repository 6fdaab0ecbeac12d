/* patchcall — patchcall_static_call_return0: the built-in target that returns 0 (the
 * kernel's __static_call_return0). In assembly so it is exactly `xor eax, eax; ret` and
 * clobbers nothing else, whatever the call's signature. */
#if defined(__x86_64__)
	.text
	.globl patchcall_static_call_return0
	.type patchcall_static_call_return0, @function
	.balign 16
patchcall_static_call_return0:
	xorl %eax, %eax
	ret
	.size patchcall_static_call_return0, .-patchcall_static_call_return0
#elif defined(__aarch64__)
	.text
	.globl patchcall_static_call_return0
	.type patchcall_static_call_return0, %function
	.balign 16
patchcall_static_call_return0:
	mov x0, #0
	ret
	.size patchcall_static_call_return0, .-patchcall_static_call_return0
#endif
	.section .note.GNU-stack, "", %progbits
