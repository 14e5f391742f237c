/* boot-sector.S: the smallest test guest, a BIOS boot sector that talks
 * on the first serial port (COM1, where ferry verify --boot reads the
 * console) and behaves as GUEST, chosen when it is assembled
 * (make-boot-sector.sh):
 *
 *   GUEST=1  tcg-only  prints three stages a second apart, then a login
 *                      prompt under TCG (CPUID leaf 0x40000000 reads
 *                      "TCGTCGTCGTCG") and hangs anywhere else: under KVM
 *                      ("KVMKVMKVM"), as Linux guests hang on hosts whose
 *                      KVM is broken, after printing
 *   GUEST=2  hang      prints a line, then hangs
 *   GUEST=3  panic     prints a line, then a kernel panic, then hangs
 *   GUEST=4  slow      prints six stages two seconds apart, then a
 *                      login prompt, under any accelerator (a guest that
 *                      is slow but alive)
 *   GUEST=5  root-wait prints what Debian's initramfs prints while it
 *                      waits for its root device (no line end), then
 *                      hangs, as one waits for a disk whose driver it
 *                      lacks
 *   GUEST=6  lockup    prints a stage, then Linux's report of a soft
 *                      lockup and of an RCU stall a second apart, again
 *                      and again: under TCG twice and then a login
 *                      prompt, anywhere else for ever (a guest that KVM
 *                      hangs but whose watchdogs keep talking)
 *
 * The hypervisor leaf is QEMU's: its TCG fills it unless the CPU says
 * tcg-cpuid=off; its KVM, and real KVM hosts, put "KVMKVMKVM" there.
 * 16-bit real mode, loaded at 0x7c00; assemble with GNU as (--32) and
 * link with ld --oformat binary -Ttext 0x7c00.
 */
        .code16
        .text
        .globl _start
_start:
        cli
        xorw %ax, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movw $0x7c00, %sp
        ljmp $0, $main                  /* a known CS:IP */

main:
        movw $banner, %si
        call puts
.if GUEST == 1 || GUEST == 4
  .if GUEST == 1
        movw $18, %cx                   /* a second apart */
  .else
        movw $36, %cx                   /* two seconds apart */
  .endif
        movw $stagelist, %si
        call stages
.endif
.if GUEST == 1
        call is_tcg
        jne hang
.endif
.if GUEST == 6
        movw $18, %cx
        movw $booting, %si
        call stages
        movw $2, %bp                    /* reports before TCG logs in */
1:      movw $18, %cx
        movw $lockups, %si
        call stages
        call is_tcg
        jne 1b
        decw %bp
        jnz 1b
.endif
.if GUEST == 1 || GUEST == 4 || GUEST == 6
        movw $login, %si
        call puts
.elseif GUEST == 3
        movw $panic, %si
        call puts
.elseif GUEST == 5
        movw $rootwait, %si
        call puts
.endif

/* Stop for good: interrupts off, the CPU halted. */
hang:
        cli
        hlt
        jmp hang

.if GUEST == 1 || GUEST == 6
/* ZF set when CPUID leaf 0x40000000, the hypervisor's signature in EBX,
 * ECX and EDX, reads TCG's. */
is_tcg:
        movl $0x40000000, %eax
        xorl %ecx, %ecx
        cpuid
        movl %ebx, sig
        movl %ecx, sig + 4
        movl %edx, sig + 8
        movw $sig, %si
        movw $tcg, %di
        movw $12, %cx
        cld
        repe cmpsb
        ret
.endif

/* Print the strings that follow one another from SI (each NUL-terminated,
 * the list ended by an empty one), each after CX ticks of the BIOS timer
 * (18.2 a second, counted at 0x46c). */
stages:
        cmpb $0, (%si)
        je 2f
        sti
        movw 0x46c, %bx
1:      hlt                             /* until the next tick */
        movw 0x46c, %ax
        subw %bx, %ax
        cmpw %cx, %ax
        jb 1b
        cli
        call puts
        jmp stages
2:      ret

/* Print the NUL-terminated string at SI on COM1, waiting for room in the
 * transmitter before each byte. */
puts:
        lodsb
        testb %al, %al
        jz 2f
        movb %al, %ah
        movw $0x3fd, %dx                /* line status */
1:      inb %dx, %al
        testb $0x20, %al                /* transmit holding register empty */
        jz 1b
        movb %ah, %al
        movw $0x3f8, %dx
        outb %al, %dx
        jmp puts
2:      ret

banner: .asciz "SeaBIOS-style boot: ferry test guest\r\n"
.if GUEST == 6
booting:
        .asciz "Booting Linux...\r\n"
        .byte 0
lockups:
        .asciz "[   22.104181] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [swapper/0:1]\r\n"
        .asciz "[   43.118002] rcu: INFO: rcu_sched self-detected stall on CPU\r\n"
        .byte 0
.endif
.if GUEST == 1 || GUEST == 4
stagelist:
        .asciz "Loading stage 1...\r\n"
        .asciz "Booting Linux...\r\n"
        .asciz "Starting init...\r\n"
  .if GUEST == 4
        .asciz "Reached target Multi-User System.\r\n"
        .asciz "Started Serial Getty on ttyS0.\r\n"
        .asciz "Debian GNU/Linux 12 ferry-test ttyS0\r\n"
  .endif
        .byte 0
login:  .asciz "\r\nferry-test login: "
.endif
.if GUEST == 6
login:  .asciz "\r\nferry-test login: "
.endif
.if GUEST == 1 || GUEST == 6
tcg:    .ascii "TCGTCGTCGTCG"
sig:    .fill 12, 1, 0
.endif
.if GUEST == 5
rootwait: .asciz "Begin: Waiting for root file system ... "
.endif
.if GUEST == 3
panic:  .asciz "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n"
.endif
        .org 510
        .word 0xaa55                    /* the BIOS boots only this */
