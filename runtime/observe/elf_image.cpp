// patchcall — ElfImage (see elf_image.h).
#include "elf_image.h"

#include <elf.h>

#include <cstring>
#include <string>

#include "../arch/arch.h"
#include "../format.h"

namespace patchcall::observe {
namespace {

size_t alignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

// A string table under construction: offset 0 is the empty string.
struct StringTable {
  std::string data{'\0'};
  uint32_t add(std::string_view s) {
    const auto at = static_cast<uint32_t>(data.size());
    data.append(s);
    data.push_back('\0');
    return at;
  }
};

}  // namespace

Result<ElfImage> ElfImage::build(const CodeEvent& blob, std::span<const CodeRange> ranges,
                                 std::span<const uint8_t> ehFrame) {
  const CodeRange whole{blob.start, blob.size, blob.name};
  if (ranges.empty()) ranges = {&whole, 1};
  for (const CodeRange& r : ranges) {
    if (r.start < blob.start || r.size > blob.size || r.start - blob.start > blob.size - r.size) {
      return {Error::kInvalidArgument, "debug image: range " + std::string(r.name) + " at " +
                                           detail::hex(r.start) + " lies outside the blob at " +
                                           detail::hex(blob.start)};
    }
  }

  StringTable names;
  StringTable sectionNames;
  std::vector<Elf64_Sym> symbols(1);  // index 0: the undefined symbol
  enum : uint16_t { kNull, kText, kEhFrame };
  const bool hasEhFrame = !ehFrame.empty();
  const uint16_t text = kText;
  const uint16_t eh = hasEhFrame ? kEhFrame : 0;
  const uint16_t symtab = hasEhFrame ? 3 : 2;
  const uint16_t strtab = symtab + 1;
  const uint16_t shstrtab = symtab + 2;
  const uint16_t sectionCount = symtab + 3;
  for (const CodeRange& r : ranges) {
    Elf64_Sym s{};
    s.st_name = names.add(displayName(r.name, r.start));
    s.st_info = ELF64_ST_INFO(STB_GLOBAL, STT_FUNC);
    s.st_shndx = text;
    s.st_value = r.start;
    s.st_size = r.size;
    symbols.push_back(s);
  }

  // File layout: header, .eh_frame, .symtab, .strtab, .shstrtab, section headers.
  std::vector<Elf64_Shdr> sh(sectionCount);
  sh[text].sh_name = sectionNames.add(".text");
  if (hasEhFrame) sh[eh].sh_name = sectionNames.add(".eh_frame");
  sh[symtab].sh_name = sectionNames.add(".symtab");
  sh[strtab].sh_name = sectionNames.add(".strtab");
  sh[shstrtab].sh_name = sectionNames.add(".shstrtab");
  size_t at = sizeof(Elf64_Ehdr);
  const size_t ehAt = at = alignUp(at, 8);
  at += ehFrame.size();
  const size_t symAt = at = alignUp(at, 8);
  at += symbols.size() * sizeof(Elf64_Sym);
  const size_t strAt = at;
  at += names.data.size();
  const size_t shstrAt = at;
  at += sectionNames.data.size();
  const size_t shAt = at = alignUp(at, 8);
  at += sh.size() * sizeof(Elf64_Shdr);

  ElfImage image;
  image.bytes_.assign(at, 0);
  uint8_t* out = image.bytes_.data();

  sh[text].sh_type = SHT_NOBITS;
  sh[text].sh_flags = SHF_ALLOC | SHF_EXECINSTR;
  sh[text].sh_addr = blob.start;
  sh[text].sh_offset = ehAt;  // NOBITS: occupies no file bytes
  sh[text].sh_size = blob.size;
  sh[text].sh_addralign = 16;
  if (hasEhFrame) {
    sh[eh].sh_type = SHT_PROGBITS;
    sh[eh].sh_flags = SHF_ALLOC;
    sh[eh].sh_addr = reinterpret_cast<uintptr_t>(out + ehAt);
    sh[eh].sh_offset = ehAt;
    sh[eh].sh_size = ehFrame.size();
    sh[eh].sh_addralign = 8;
    std::memcpy(out + ehAt, ehFrame.data(), ehFrame.size());
  }
  sh[symtab].sh_type = SHT_SYMTAB;
  sh[symtab].sh_offset = symAt;
  sh[symtab].sh_size = symbols.size() * sizeof(Elf64_Sym);
  sh[symtab].sh_link = strtab;
  sh[symtab].sh_info = 1;  // first non-local symbol: all but the null one are global
  sh[symtab].sh_addralign = 8;
  sh[symtab].sh_entsize = sizeof(Elf64_Sym);
  std::memcpy(out + symAt, symbols.data(), sh[symtab].sh_size);
  sh[strtab].sh_type = SHT_STRTAB;
  sh[strtab].sh_offset = strAt;
  sh[strtab].sh_size = names.data.size();
  sh[strtab].sh_addralign = 1;
  std::memcpy(out + strAt, names.data.data(), names.data.size());
  sh[shstrtab].sh_type = SHT_STRTAB;
  sh[shstrtab].sh_offset = shstrAt;
  sh[shstrtab].sh_size = sectionNames.data.size();
  sh[shstrtab].sh_addralign = 1;
  std::memcpy(out + shstrAt, sectionNames.data.data(), sectionNames.data.size());
  std::memcpy(out + shAt, sh.data(), sh.size() * sizeof(Elf64_Shdr));

  Elf64_Ehdr h{};
  std::memcpy(h.e_ident, ELFMAG, SELFMAG);
  h.e_ident[EI_CLASS] = ELFCLASS64;
  h.e_ident[EI_DATA] = ELFDATA2LSB;
  h.e_ident[EI_VERSION] = EV_CURRENT;
  h.e_ident[EI_OSABI] = ELFOSABI_SYSV;
  h.e_type = ET_EXEC;
  h.e_machine = arch::kElfMachine;
  h.e_version = EV_CURRENT;
  h.e_entry = blob.start;
  h.e_shoff = shAt;
  h.e_ehsize = sizeof(Elf64_Ehdr);
  h.e_shentsize = sizeof(Elf64_Shdr);
  h.e_shnum = sectionCount;
  h.e_shstrndx = shstrtab;
  std::memcpy(out, &h, sizeof h);
  return image;
}

}  // namespace patchcall::observe
