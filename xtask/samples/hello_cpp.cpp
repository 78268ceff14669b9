/*
 * e2e sample for `cargo xtask e2e`, "dynamic-cpp" case: the same output as
 * hello_static.c, built with `c++ -O2 -pthread` (dynamically linked), so the
 * image needs ld-linux, libstdc++ (and its own dependency libm), libgcc_s
 * and libc packed into it.
 *
 * It deliberately exercises libstdc++ at run time: the lines are built with
 * std::string and std::ostringstream and written with std::cout from a
 * std::thread that main() joins.
 *
 * Output format, one item per line:
 *   argv[<i>]=<argument>
 *   env:<KEY>=<VALUE>
 *   HELLO-DONE
 */
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char **environ;

int main(int argc, char **argv)
{
    std::vector<std::string> args(argv, argv + argc);
    std::vector<std::string> env;
    for (char **entry = environ; entry != nullptr && *entry != nullptr; entry++)
        env.emplace_back(*entry);

    std::ostringstream text;
    for (std::size_t i = 0; i < args.size(); i++)
        text << "argv[" << i << "]=" << args[i] << '\n';
    for (const std::string &entry : env)
        text << "env:" << entry << '\n';
    text << "HELLO-DONE\n";
    const std::string lines = text.str();

    bool written = false;
    std::thread printer([&lines, &written] {
        std::cout << lines << std::flush;
        written = static_cast<bool>(std::cout);
    });
    printer.join();
    return written ? 0 : 1;
}
